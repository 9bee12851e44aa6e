package judge

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/declared"
)

// Every declared secret is in git as sops-nix reads it: what sops-nix would
// install is found (any file, any format, a whole file); a key or file it
// cannot read, or an empty value, is missing, named by its declaration.
func TestEachDeclaredSecretIsInGitAsSopsNixReadsIt(t *testing.T) {
	decls := []declared.Secret{
		{Name: "tls_fullchain", Key: "tls_fullchain", SopsFile: "secrets/tls/fullchain.pem", Format: "binary"},
		{Name: "registry_password", Key: "registry_password", SopsFile: "secrets/secrets.yaml", Format: "yaml"},
		{Name: "dashboard.yaml", Key: "", SopsFile: "secrets/dashboard.yaml", Format: "yaml"},
	}
	value := func(s declared.Secret) (string, error) {
		switch s.Name {
		case "registry_password":
			return "", errors.New(`secrets repo secrets/secrets.yaml holds no key "registry_password"`)
		case "dashboard.yaml":
			return "", nil
		}
		return "-----BEGIN CERTIFICATE-----", nil
	}
	got := DeclaredSecrets(decls, value)
	require.Len(t, got, 2)
	assert.Equal(t, SecretMissing, got[0].ID)
	assert.Contains(t, got[0].String(), `secret registry_password is in secrets/secrets.yaml as declared (key "registry_password", format yaml`)
	assert.Contains(t, got[0].String(), `holds no key "registry_password"`)
	assert.Contains(t, got[1].String(), "secret dashboard.yaml is in secrets/dashboard.yaml as declared (key \"\", format yaml; decrypted with the bootstrap key): its value is empty")
	assert.Empty(t, DeclaredSecrets(decls[:1], value))
}
