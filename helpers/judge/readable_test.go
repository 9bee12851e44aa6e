package judge

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/leakscan"
	"github.com/cc-ci/acceptance/helpers/probe"
)

// A decrypted secret may be read by whom its declaration names — sops-nix's
// owner option, the NixOS pattern of a key owned by its service's user
// (owner "drone", mode 0400) — at its own file, and by nobody else
// anywhere: not by others, not by another owner than declared, not in a
// copy elsewhere.
func TestADeclaredOwnerMayReadItsSecretAndNobodyElse(t *testing.T) {
	const real = "/run/secrets.d/1/drone_rpc_secret"
	decl := declared.Secret{Name: "drone_rpc_secret", Key: "drone_rpc_secret", Path: "/run/secrets/drone_rpc_secret", Mode: "0400", Owner: "drone", Group: "drone"}
	file := probe.FileInfo{Path: decl.Path, RealPath: real, SHA256: "x", Mode: "400", Owner: "drone", Group: "drone", UID: "996", GID: "996"}
	found := func(where string) []leakscan.Finding {
		return []leakscan.Finding{{Secret: "drone_rpc_secret", Variant: "raw", Where: where}}
	}
	grant := func(f probe.FileInfo) []Grant { return []Grant{{Secret: "drone_rpc_secret", Decl: decl, File: f}} }
	with := func(edit func(*probe.FileInfo)) probe.FileInfo { f := file; edit(&f); return f }
	for _, c := range []struct {
		name  string
		found []leakscan.Finding
		grant []Grant
		fails bool
	}{
		{"its owner reads its own file", found(real), grant(file), false},
		{"nothing found", nil, grant(file), false},
		{"a copy elsewhere", found("/etc/cc-ci/drone.env"), grant(file), true},
		{"others may read it", found(real), grant(with(func(f *probe.FileInfo) { f.Mode = "404" })), true},
		{"another owner than declared", found(real), grant(with(func(f *probe.FileInfo) { f.Owner, f.UID = "nginx", "60" })), true},
		{"another mode than declared", found(real), grant(with(func(f *probe.FileInfo) { f.Mode = "440" })), true},
		{"another secret at that file", []leakscan.Finding{{Secret: "webhook_hmac", Variant: "raw", Where: real}}, grant(file), true},
		{"no declaration grants it", found(real), nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps := ReadableSecrets(c.found, c.grant)
			assert.Equal(t, c.fails, len(ps) > 0, "%v", ps)
			for _, p := range ps {
				assert.Equal(t, SecretReadable, p.ID)
			}
		})
	}
}
