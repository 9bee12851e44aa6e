package judge

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/probe"
)

// Files as probe.Files records them (sha256sum; stat -L -c '%a %U %G %u %g'),
// judged against declarations with sops-nix's defaults (owner and group
// null: uid and gid 0, which OwnedBy spells "uid:0" and "gid:0").
func TestEachInstalledFileIsJudgedAgainstItsDeclaration(t *testing.T) {
	file := func(sha, mode, owner, group, uid, gid string) probe.FileInfo {
		return probe.FileInfo{Path: "/run/secrets/webhook_hmac", SHA256: sha, Mode: mode, Owner: owner, Group: group, UID: uid, GID: gid}
	}
	secret := func(f probe.FileInfo) Installed {
		return Installed{What: "secret webhook_hmac", Key: "webhook_hmac", Mode: "0400", Owner: "uid:0", Group: "gid:0", WantSHA256: "abc", File: f}
	}
	cases := []struct {
		name string
		in   Installed
		want []string // identifiers
		says string
	}{
		{"as declared", secret(file("abc", "400", "root", "root", "0", "0")), nil, ""},
		{"missing", secret(file("", "", "", "", "", "")), []string{InstalledMissing}, "/run/secrets/webhook_hmac (secret webhook_hmac) exists: it does not"},
		{"another value", secret(file("def", "400", "root", "root", "0", "0")), []string{InstalledValue}, `holds the value of "webhook_hmac" in git (sha256)`},
		{"group-readable", secret(file("abc", "440", "root", "keys", "0", "996")), []string{InstalledMode, InstalledOwner},
			"/run/secrets/webhook_hmac (secret webhook_hmac) mode: declared 0400, found 440"},
		{"owned by its service user", Installed{What: "secret drone_rpc_secret", Mode: "0400", Owner: "drone", Group: "drone", WantSHA256: "abc",
			File: file("abc", "400", "drone", "drone", "997", "997")}, nil, ""},
		{"a template: no value compared", Installed{What: "template registry.env", Mode: "0400", Owner: "uid:0", Group: "gid:0",
			File: file("xyz", "400", "root", "root", "0", "0")}, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ps := InstalledFiles("C3", []Installed{c.in})
			var ids []string
			for _, p := range ps {
				ids = append(ids, p.ID)
				assert.Equal(t, "C3", p.Test)
			}
			assert.Equal(t, c.want, ids)
			if c.says != "" {
				assert.Contains(t, List(ps), c.says)
			}
		})
	}
}

// /run/secrets holds what the host declares there, and nothing else.
func TestSecretsDirHoldsOnlyWhatIsDeclared(t *testing.T) {
	decl := &declared.Declarations{Host: "cc-ci", Secrets: []declared.Secret{{Name: "webhook_hmac", Path: "/run/secrets/webhook_hmac"}}}
	assert.Empty(t, OnlyDeclaredInSecretsDir("C4", []string{"webhook_hmac"}, decl))
	ps := OnlyDeclaredInSecretsDir("C4", []string{"webhook_hmac", "drone_rpc_secret.bak"}, decl)
	if assert.Len(t, ps, 1) {
		assert.Equal(t, InstalledUndeclared, ps[0].ID)
		assert.Contains(t, ps[0].String(), "/run/secrets/drone_rpc_secret.bak is not a secret or template nixosConfigurations.cc-ci declares")
	}
}
