// Package sopsfile encrypts and decrypts sops YAML files with age keys, using
// the sops library itself — the code path sops-nix's sops-install-secrets
// uses on the target. It is the only package that imports sops (a heavy
// dependency): keep it that way.
//
// Decryption happens in memory with an identity passed in: no environment
// variable and no key file is read or written.
package sopsfile

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	"github.com/getsops/sops/v3/cmd/sops/common"
	"github.com/getsops/sops/v3/cmd/sops/formats"
	"github.com/getsops/sops/v3/config"
	"github.com/getsops/sops/v3/keyservice"
	"github.com/getsops/sops/v3/logging"
	sopsyaml "github.com/getsops/sops/v3/stores/yaml"
	"github.com/getsops/sops/v3/version"
	"github.com/sirupsen/logrus"
	"go.yaml.in/yaml/v3"

	"github.com/cc-ci/acceptance/helpers/sopsmeta"
)

func init() {
	// sops logs every decryption at info level; the harness keeps its own log.
	logging.SetLevel(logrus.WarnLevel)
}

// Errors a caller can tell apart.
var (
	ErrNoMatchingKey = errors.New("no age identity given can decrypt the data key")
	ErrMACMismatch   = errors.New("MAC mismatch: the file was changed after it was encrypted")
	ErrTampered      = errors.New("a value does not authenticate: the file was changed after it was encrypted")
)

func store() *sopsyaml.Store { return sopsyaml.NewStore(&config.YAMLStoreConfig{}) }

// Encrypt encrypts a plain YAML document to the age recipients, as `sops -e` does.
func Encrypt(plain []byte, recipients []string) ([]byte, error) {
	return EncryptAs(plain, "yaml", recipients)
}

// EncryptAs encrypts a plain file of format (one of Formats) to the age
// recipients, as `sops -e --input-type <format>` does.
func EncryptAs(plain []byte, format string, recipients []string) ([]byte, error) {
	if !slices.Contains(Formats, format) {
		return nil, fmt.Errorf("sops: format %q is none of sops-nix's %v", format, Formats)
	}
	st := common.StoreForFormat(formats.FormatFromString(format), config.NewStoresConfig())
	branches, err := st.LoadPlainFile(plain)
	if err != nil {
		return nil, fmt.Errorf("sops: read plain %s: %w", format, err)
	}
	var group sops.KeyGroup
	for _, r := range recipients {
		mk, err := sopsage.MasterKeyFromRecipient(r)
		if err != nil {
			return nil, fmt.Errorf("sops: age recipient %q: %w", r, err)
		}
		group = append(group, mk)
	}
	tree := sops.Tree{Branches: branches, Metadata: sops.Metadata{
		KeyGroups: []sops.KeyGroup{group}, UnencryptedSuffix: "_unencrypted", Version: version.Version}}
	dataKey, errs := tree.GenerateDataKeyWithKeyServices([]keyservice.KeyServiceClient{keyservice.NewLocalClient()})
	if len(errs) > 0 {
		return nil, fmt.Errorf("sops: generate data key: %w", errors.Join(errs...))
	}
	if err := common.EncryptTree(common.EncryptTreeOpts{DataKey: dataKey, Tree: &tree, Cipher: aes.NewCipher()}); err != nil {
		return nil, fmt.Errorf("sops: encrypt: %w", err)
	}
	out, err := st.EmitEncryptedFile(tree)
	if err != nil {
		return nil, fmt.Errorf("sops: write encrypted %s: %w", format, err)
	}
	return out, nil
}

// Formats are sops-nix's format option's values (Mic92/sops-nix 56b2406,
// pkgs/sops-install-secrets/main.go: FormatType): each names the store sops
// reads the file with.
var Formats = []string{"yaml", "json", "binary", "dotenv", "ini"}

// Plain decrypts a sops file of format and returns the whole plaintext file
// as sops emits it — what sops-nix installs for a secret of format binary,
// dotenv or ini, or of yaml or json with key = "" (sops-install-secrets'
// decryptSecret: decrypt.File(path, format), i.e. decrypt.DataWithFormat:
// the format's store, the tree decrypted, the MAC checked, EmitPlainFile).
func Plain(enc []byte, format, identities string) ([]byte, error) {
	if !slices.Contains(Formats, format) {
		return nil, fmt.Errorf("sops: format %q is none of sops-nix's %v", format, Formats)
	}
	st := common.StoreForFormat(formats.FormatFromString(format), config.NewStoresConfig())
	tree, err := st.LoadEncryptedFile(enc)
	if err != nil {
		return nil, fmt.Errorf("sops: not a sops-encrypted %s file: %w", format, err)
	}
	if err := decryptTree(&tree, identities); err != nil {
		return nil, err
	}
	plain, err := st.EmitPlainFile(tree.Branches)
	if err != nil {
		return nil, fmt.Errorf("sops: emit plain %s: %w", format, err)
	}
	return plain, nil
}

// Decrypt decrypts with the given age identities (age identity lines, "AGE-SECRET-KEY-…"),
// verifies the MAC, and returns the leaf values by dotted path ("a.b", "list.0").
func Decrypt(enc []byte, identities string) (map[string]string, error) {
	tree, err := store().LoadEncryptedFile(enc)
	if err != nil {
		return nil, fmt.Errorf("sops: not a sops-encrypted YAML file: %w", err)
	}
	if err := decryptTree(&tree, identities); err != nil {
		return nil, err
	}
	plain, err := store().EmitPlainFile(tree.Branches)
	if err != nil {
		return nil, fmt.Errorf("sops: emit plain YAML: %w", err)
	}
	var doc any
	if err := yaml.Unmarshal(plain, &doc); err != nil {
		return nil, fmt.Errorf("sops: parse decrypted YAML: %w", err)
	}
	out := map[string]string{}
	flatten("", doc, func(path string, v any) { out[path] = fmt.Sprint(v) })
	return out, nil
}

// decryptTree decrypts tree in place with the first identity that opens its
// data key, and checks its MAC.
func decryptTree(tree *sops.Tree, identities string) error {
	var ids sopsage.ParsedIdentities
	if err := ids.Import(identities); err != nil {
		return fmt.Errorf("sops: age identity: %w", err)
	}
	var dataKey []byte
	for _, g := range tree.Metadata.KeyGroups {
		for _, k := range g {
			ak, ok := k.(*sopsage.MasterKey)
			if !ok {
				continue
			}
			ids.ApplyToMasterKey(ak)
			if dk, err := ak.Decrypt(); err == nil {
				dataKey = dk
				break
			}
		}
	}
	if dataKey == nil {
		return ErrNoMatchingKey
	}
	cipher := aes.NewCipher()
	computed, err := tree.Decrypt(dataKey, cipher)
	if err != nil {
		return fmt.Errorf("sops: %w (%v)", ErrTampered, err)
	}
	stored, err := cipher.Decrypt(tree.Metadata.MessageAuthenticationCode, dataKey, tree.Metadata.LastModified.Format(time.RFC3339))
	if err != nil || stored != computed {
		return ErrMACMismatch
	}
	return nil
}

// Info is what can be read from a sops file without any key.
type Info struct {
	Recipients []string // age recipients in the sops metadata
	Leaves     []Leaf   // every value outside the sops metadata
	HasMAC     bool
}

// Leaf is one value of the document.
type Leaf struct {
	Path      string
	Encrypted bool // ENC[AES256_GCM,…]
}

// Plaintext returns the paths of the leaves that are not encrypted.
func (i *Info) Plaintext() []string {
	var out []string
	for _, l := range i.Leaves {
		if !l.Encrypted {
			out = append(out, l.Path)
		}
	}
	return out
}

// Inspect reads a sops YAML file's structure. A file with no sops metadata is
// an error: it is not a sops file at all.
func Inspect(enc []byte) (*Info, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(enc, &doc); err != nil {
		return nil, fmt.Errorf("sops: parse YAML: %w", err)
	}
	meta, ok := doc["sops"].(map[string]any)
	if !ok {
		return nil, errors.New("sops: no sops metadata: the file is not sops-encrypted")
	}
	info := &Info{}
	if mac, _ := meta["mac"].(string); strings.HasPrefix(mac, "ENC[") {
		info.HasMAC = true
	}
	if ages, ok := meta["age"].([]any); ok {
		for _, a := range ages {
			if m, ok := a.(map[string]any); ok {
				if r, ok := m["recipient"].(string); ok {
					info.Recipients = append(info.Recipients, r)
				}
			}
		}
	}
	sort.Strings(info.Recipients)
	// Only what sops writes, where and as it writes it, is its metadata;
	// anything else under sops: is plaintext that travels with the file
	// (sops ignores it).
	for _, path := range sopsmeta.Problems("sops", meta) {
		info.Leaves = append(info.Leaves, Leaf{Path: path})
	}
	delete(doc, "sops")
	flatten("", doc, func(path string, v any) {
		s, isString := v.(string)
		info.Leaves = append(info.Leaves, Leaf{Path: path, Encrypted: isString && strings.HasPrefix(s, "ENC[AES256_GCM,")})
	})
	sort.Slice(info.Leaves, func(a, b int) bool { return info.Leaves[a].Path < info.Leaves[b].Path })
	return info, nil
}

func flatten(prefix string, v any, leaf func(string, any)) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			flatten(join(k), c, leaf)
		}
	case []any:
		for i, c := range t {
			flatten(join(fmt.Sprint(i)), c, leaf)
		}
	default:
		leaf(prefix, v)
	}
}
