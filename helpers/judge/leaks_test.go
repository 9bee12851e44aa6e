package judge

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/cc-ci/acceptance/helpers/leakscan"
	"github.com/cc-ci/acceptance/helpers/tlscheck/tlstest"
)

// The certificate is judged wherever the secrets hold it: here as a binary
// sops file's one value ("data", as sops' binary store names it), or as
// two keys of a YAML file.
func TestTheCertificateIsJudgedByContent(t *testing.T) {
	now := time.Now()
	chain, key := tlstest.Cert(t, []string{"*.ci.example"}, now.Add(-time.Hour), now.AddDate(0, 0, 90))
	other, otherKey := tlstest.Cert(t, []string{"*.elsewhere.example"}, now.Add(-time.Hour), now.AddDate(0, 0, 90))
	short, shortKey := tlstest.Cert(t, []string{"*.ci.example"}, now.Add(-time.Hour), now.AddDate(0, 0, 3))
	cases := []struct {
		name    string
		secrets map[string]string
		want    string // "" = no problem
	}{
		{"binary files", map[string]string{"secrets/tls/fullchain.pem:data": string(chain), "secrets/tls/privkey.pem:data": string(key), "token": "x"}, ""},
		{"yaml keys", map[string]string{"wildcard.cert": string(chain), "wildcard.key": string(key)}, ""},
		{"none", map[string]string{"token": "abc"}, "hold a PEM certificate chain and its private key: they hold none"},
		{"another domain", map[string]string{"c": string(other), "k": string(otherKey)}, "do not cover *.ci.example"},
		{"expires too soon", map[string]string{"c": string(short), "k": string(shortKey)}, "fewer than 14"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ps := Certificate(c.secrets, "ci.example", 14, now)
			if c.want == "" {
				assert.Empty(t, ps)
				return
			}
			if assert.NotEmpty(t, ps) {
				assert.Equal(t, CertificateInGit, ps[0].ID)
				assert.Contains(t, ps[0].String(), c.want)
			}
		})
	}
}

// Each finding of a scan is a problem of its own, named by where it is.
func TestEachLeakIsAProblem(t *testing.T) {
	found := []leakscan.Finding{{Secret: "webhook_hmac", Variant: "raw", Where: "git object 0123abcd (ops/env)"}, {Secret: "drone_rpc_secret", Variant: "base64", Where: "git object 4567 (x)"}}
	ps := PlaintextInRepo("base repo", found)
	if assert.Len(t, ps, 2) {
		assert.Equal(t, PlaintextInGit, ps[0].ID)
		assert.Contains(t, ps[0].String(), "webhook_hmac (raw) in git object 0123abcd (ops/env)")
	}
	assert.Empty(t, PlaintextInRepo("base repo", nil))
	ps = PlaintextOnTheMachine([]leakscan.Finding{{Secret: "tls_privkey", Variant: "raw", Where: "/nix/store/abc-x/key"}})
	if assert.Len(t, ps, 1) {
		assert.Equal(t, PlaintextOnMachine, ps[0].ID)
	}
}
