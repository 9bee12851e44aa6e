package labtarget_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/fixtures"
	"github.com/cc-ci/acceptance/helpers/labtarget"
)

// Without a lab: a freshly generated target served over HTTP by the real git
// backend, configured the way lab.env does. TargetSecrets must come back with
// the bootstrap key, the secrets repo's read token and the decrypted values.
func TestTargetSecretsOfAServedTarget(t *testing.T) {
	tg, baseURL, secretsURL := labtarget.Served(t)

	socket := filepath.Join(t.TempDir(), "unix.socket") // config wants one; nothing dials it
	require.NoError(t, os.WriteFile(socket, nil, 0o600))
	t.Setenv("CCCI_CONFIG", "")
	t.Setenv("CCCI_INCUS_URL", "")
	t.Setenv("CCCI_INCUS_SOCKET", socket)
	t.Setenv("CCCI_BASE_REPO_URL", baseURL)
	t.Setenv("CCCI_SECRETS_REPO_URL", secretsURL)
	t.Setenv("CCCI_AGE_KEY_FILE", tg.BootstrapKeyFile())

	got := labtarget.TargetSecrets(t)

	key, err := os.ReadFile(tg.BootstrapKeyFile())
	require.NoError(t, err)
	assert.Contains(t, strings.Fields(string(key)), got["bootstrap-age-key"], "the bootstrap key, as in its file")
	assert.True(t, strings.HasPrefix(got["bootstrap-age-key"], "AGE-SECRET-KEY-"), "the bootstrap key is an age identity")
	token, err := os.ReadFile(filepath.Join(tg.SecretsRepo(), fixtures.TokenFile))
	require.NoError(t, err)
	assert.Equal(t, strings.TrimSpace(string(token)), got["secrets-repo-token"], "the secrets repo's read token")
	for _, name := range []string{"drone_rpc_secret", "webhook_hmac", "registry_password"} {
		assert.NotEmpty(t, got[name], "decrypted secret %s", name)
	}
}
