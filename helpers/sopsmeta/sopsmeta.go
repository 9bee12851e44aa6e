// Package sopsmeta names the fields sops writes in a file's `sops:`
// metadata block. What a scan or a check may leave unjudged there is the
// values of these fields only: sops ignores any other key in the block when
// it decrypts (its metadata is decoded leniently and the MAC covers the data,
// not the metadata), so a value pasted under `sops:` travels with the file
// in plaintext. A leaf package, so that the leak scanner need not import sops.
package sopsmeta

import "slices"

// Fields are the metadata keys of sops v3.13 (stores/stores.go, the
// mapstructure tags of Metadata and of each key type), top level and nested.
var Fields = []string{
	"age", "arn", "aws_profile", "azure_kv", "context", "created_at", "enc", "encrypted_comment_regex", "encrypted_regex",
	"encrypted_suffix", "engine_path", "fp", "gcp_kms", "hc_vault", "hckms", "key_groups", "key_id", "key_name", "kms",
	"lastmodified", "mac", "mac_only_encrypted", "name", "pgp", "recipient", "resource_id", "role", "shamir_threshold",
	"unencrypted_comment_regex", "unencrypted_regex", "unencrypted_suffix", "vault_address", "vault_url", "version",
}

// IsField reports whether sops writes a metadata field of this name.
func IsField(name string) bool { return slices.Contains(Fields, name) }
