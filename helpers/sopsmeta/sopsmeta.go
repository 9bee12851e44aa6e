// Package sopsmeta knows what sops writes under a file's `sops:` block:
// which field goes where, and the shape of each value. Anything else there
// — a key sops does not write at that place, or a value not of the shape
// sops writes for its field — is plaintext that travels with the file
// (sops ignores it when it decrypts), and a check must say so.
//
// The layout is sops's own serialisation structs (getsops/sops/v3
// stores/stores.go: metadata, keygroup, pgpkey, kmskey, gcpkmskey,
// hckmskey, vaultkey, azkvkey, agekey; v3.13.3).
package sopsmeta

import (
	"fmt"
	"regexp"
	"sort"
	"time"
)

// A spec is what one place of the block may hold: a shape (a scalar
// value), a block of fields, or a list of such blocks.
type spec interface{}

type (
	shape  func(v any) bool
	fields map[string]spec
	listOf fields
)

func matches(re string) shape {
	r := regexp.MustCompile(re)
	return func(v any) bool { s, ok := v.(string); return ok && r.MatchString(s) }
}

var (
	timestamp = shape(func(v any) bool {
		switch t := v.(type) {
		case time.Time: // a YAML decoder may have made it a time already
			return true
		case string:
			_, err := time.Parse(time.RFC3339, t)
			return err == nil
		}
		return false
	})
	integer = shape(func(v any) bool { _, ok := v.(int); return ok })
	boolean = shape(func(v any) bool { _, ok := v.(bool); return ok })
	// The encryption context of a KMS key is plaintext by design (AWS
	// shows it in its logs): nothing there can be told from a secret.
	plaintext = shape(func(any) bool { return false })
	encrypted = matches(`^ENC\[AES256_GCM,data:[A-Za-z0-9+/=]*,iv:[A-Za-z0-9+/=]+,tag:[A-Za-z0-9+/=]+,type:[a-z]+\]$`)
	setting   = matches(`^[^\n]{0,256}$`) // a suffix or regex from .sops.yaml
	base64Key = matches(`^[A-Za-z0-9+/_-]{64,}={0,2}$`)
	armored   = func(kind string) shape {
		return matches(`^-----BEGIN ` + kind + `-----\r?\n(?:[A-Za-z0-9+/=]{0,80}\r?\n)*-----END ` + kind + `-----\r?\n?$`)
	}
)

// The key entries, one per kind of master key (stores.go's *key structs).
var (
	pgpKey  = fields{"created_at": timestamp, "enc": armored("PGP MESSAGE"), "fp": matches(`^[0-9A-Fa-f]{16}([0-9A-Fa-f]{24})?$`)}
	ageKey  = fields{"recipient": matches(`^(age1[0-9a-z]{50,}|ssh-(ed25519|rsa) [A-Za-z0-9+/]+={0,2})$`), "enc": armored("AGE ENCRYPTED FILE")} // age1…, age1pq1…, a plugin's, or an SSH key
	kmsKey  = fields{"arn": matches(`^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/[A-Za-z0-9/_-]+$`), "role": matches(`^(arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+)?$`), "context": plaintext, "created_at": timestamp, "enc": base64Key, "aws_profile": matches(`^[A-Za-z0-9_.@-]{0,64}$`)}
	gcpKey  = fields{"resource_id": matches(`^projects/[^/\s]+/locations/[^/\s]+/keyRings/[^/\s]+/cryptoKeys/[^/\s]+$`), "created_at": timestamp, "enc": base64Key}
	hckmKey = fields{"key_id": matches(`^[A-Za-z0-9:/_.-]{1,256}$`), "created_at": timestamp, "enc": base64Key}
	azkvKey = fields{"vault_url": matches(`^https://[A-Za-z0-9.-]+(:[0-9]+)?/?$`), "name": matches(`^[A-Za-z0-9-]{1,127}$`), "version": matches(`^([0-9a-f]{32})?$`), "created_at": timestamp, "enc": base64Key}
	vaultKy = fields{"vault_address": matches(`^https?://[A-Za-z0-9.-]+(:[0-9]+)?/?$`), "engine_path": matches(`^[A-Za-z0-9_./-]{1,256}$`), "key_name": matches(`^[A-Za-z0-9_./-]{1,256}$`), "created_at": timestamp, "enc": matches(`^vault:v[0-9]+:[A-Za-z0-9+/=]+$`)}
	keys    = fields{"pgp": listOf(pgpKey), "kms": listOf(kmsKey), "gcp_kms": listOf(gcpKey), "hckms": listOf(hckmKey), "azure_kv": listOf(azkvKey), "hc_vault": listOf(vaultKy), "age": listOf(ageKey)}
)

// block is the `sops:` block itself (stores.go's metadata).
var block = func() fields {
	f := fields{
		"shamir_threshold": integer, "key_groups": listOf(keys), "lastmodified": timestamp, "mac": encrypted,
		"unencrypted_suffix": setting, "encrypted_suffix": setting, "unencrypted_regex": setting, "encrypted_regex": setting,
		"unencrypted_comment_regex": setting, "encrypted_comment_regex": setting, "mac_only_encrypted": boolean,
		"version": matches(`^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$`),
	}
	for k, v := range keys {
		f[k] = v
	}
	return f
}()

// Problems lists, by path under prefix (e.g. "sops.age.0.note"), every key
// of the decoded `sops:` block that sops does not write at that place and
// every value that is not of the shape sops writes for its field. Empty: the
// block is only what sops wrote.
func Problems(prefix string, meta map[string]any) []string {
	var out []string
	walk(prefix, block, meta, &out)
	sort.Strings(out)
	return out
}

func walk(path string, s spec, v any, out *[]string) {
	switch s := s.(type) {
	case shape:
		if !s(v) {
			*out = append(*out, path)
		}
	case fields:
		m, ok := v.(map[string]any)
		if !ok {
			*out = append(*out, path)
			return
		}
		for k, c := range m {
			inner, known := s[k]
			if !known {
				*out = append(*out, path+"."+k)
				continue
			}
			walk(path+"."+k, inner, c, out)
		}
	case listOf:
		l, ok := v.([]any)
		if !ok {
			*out = append(*out, path)
			return
		}
		for i, c := range l {
			walk(fmt.Sprint(path, ".", i), fields(s), c, out)
		}
	}
}
