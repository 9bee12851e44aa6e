package sopsmeta

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A block as sops writes it (an age key and a PGP key, as in sops's own
// example files) has no problem; each key sops does not write at its place,
// and each value not of its field's shape, is named by its path.
func TestOnlyWhatSopsWritesWhereItWritesItIsMetadata(t *testing.T) {
	stanza := "-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBhYmNkZWYK\n-----END AGE ENCRYPTED FILE-----\n"
	good := func() map[string]any {
		return map[string]any{
			"age": []any{map[string]any{"recipient": "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "enc": stanza}},
			"pgp": []any{map[string]any{"fp": "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4", "created_at": "2026-12-07T02:56:33Z",
				"enc": "-----BEGIN PGP MESSAGE-----\nhQEMAyUpShfNkFB/AQf/\n=abcd\n-----END PGP MESSAGE-----\n"}},
			"lastmodified":       "2026-12-07T02:56:33Z",
			"mac":                "ENC[AES256_GCM,data:aGVsbG8=,iv:aXY=,tag:dGFn,type:str]",
			"unencrypted_suffix": "_unencrypted",
			"version":            "3.13.3",
		}
	}
	assert.Empty(t, Problems("sops", good()))
	pq := good()
	pq["age"].([]any)[0].(map[string]any)["recipient"] = "age1pq1" + strings.Repeat("qpzry9x8gf2tvdw0s3jn54khce6mua7l", 40) // a post-quantum recipient is long
	assert.Empty(t, Problems("sops", pq), "a post-quantum age recipient is one")

	for path, edit := range map[string]func(m map[string]any){
		"sops.registry_password_backup": func(m map[string]any) { m["registry_password_backup"] = "hunter2-plain" },
		"sops.age.0.note":               func(m map[string]any) { m["age"].([]any)[0].(map[string]any)["note"] = "hunter2-plain" },
		"sops.pgp.0.fp":                 func(m map[string]any) { m["pgp"].([]any)[0].(map[string]any)["fp"] = "hunter2-plain" },
		"sops.kms.0.context": func(m map[string]any) {
			m["kms"] = []any{map[string]any{"context": map[string]any{"name": "hunter2-plain"}}}
		},
		"sops.age.0.enc":    func(m map[string]any) { m["age"].([]any)[0].(map[string]any)["enc"] = "hunter2-plain" },
		"sops.version":      func(m map[string]any) { m["version"] = "hunter2-plain" },
		"sops.lastmodified": func(m map[string]any) { m["lastmodified"] = "hunter2-plain" },
		"sops.mac":          func(m map[string]any) { m["mac"] = "hunter2-plain" },
		"sops.stash":        func(m map[string]any) { m["stash"] = map[string]any{"enc": "hunter2-plain"} },
		"sops.age":          func(m map[string]any) { m["age"] = "hunter2-plain" },
	} {
		t.Run(path, func(t *testing.T) {
			m := good()
			edit(m)
			assert.Equal(t, []string{path}, Problems("sops", m))
		})
	}
}
