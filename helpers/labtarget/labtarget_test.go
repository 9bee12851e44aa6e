package labtarget_test

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/fixtures"
	"github.com/cc-ci/acceptance/helpers/gitserver"
	"github.com/cc-ci/acceptance/helpers/labtarget"
	"github.com/cc-ci/acceptance/helpers/labtest"
)

// Without a lab: a freshly generated target served over HTTP by the real git
// backend, configured the way lab.env does. TargetSecrets must come back with
// the bootstrap key, the secrets repo's read token and the decrypted values.
func TestTargetSecretsOfAServedTarget(t *testing.T) {
	for _, tool := range []string{"git", "nix", gitserver.DefaultBackend} {
		if _, err := exec.LookPath(tool); err != nil {
			labtest.Unavailable(t, tool+" not installed (make lab-up installs it)")
		}
	}
	root := t.TempDir()
	tg, err := fixtures.Generate(fixtures.Options{Dir: filepath.Join(root, "good"), Domain: "ci.lab.test", Gateway: "10.99.0.1",
		SecretsInputURL: "git+file:///root/cc-ci-secrets", Now: time.Now()})
	require.NoError(t, err)
	srv := httptest.NewServer(&gitserver.Server{Root: root, TokenFile: fixtures.TokenFile, Log: t.Logf})
	defer srv.Close()

	socket := filepath.Join(t.TempDir(), "unix.socket") // config wants one; nothing dials it
	require.NoError(t, os.WriteFile(socket, nil, 0o600))
	t.Setenv("CCCI_CONFIG", "")
	t.Setenv("CCCI_INCUS_URL", "")
	t.Setenv("CCCI_INCUS_SOCKET", socket)
	t.Setenv("CCCI_BASE_REPO_URL", gitserver.URL(srv.URL, "good/cc-ci.git"))
	t.Setenv("CCCI_SECRETS_REPO_URL", gitserver.URL(srv.URL, "good/cc-ci-secrets.git"))
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
