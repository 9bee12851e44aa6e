package sopsfile

// dotenv and ini sops files: sops picks their store by the file's name
// (cmd/sops/formats.FormatForPath: a .env or .ini suffix), and so does the
// harness wherever it reads a committed file by path. YAML and JSON (JSON
// is YAML; a binary file is JSON) go through Inspect and Decrypt.

import (
	"fmt"
	"sort"
	"strings"

	"github.com/getsops/sops/v3"
	sopsage "github.com/getsops/sops/v3/age"
	"github.com/getsops/sops/v3/cmd/sops/common"
	"github.com/getsops/sops/v3/cmd/sops/formats"
	"github.com/getsops/sops/v3/config"
)

// lineFormat is the format of a dotenv or ini sops file by its name, or "".
func lineFormat(path string) string {
	switch formats.FormatForPath(path) {
	case formats.Dotenv:
		return "dotenv"
	case formats.Ini:
		return "ini"
	}
	return ""
}

// InspectFile is Inspect for the committed file at path: a dotenv or ini
// file is read with its own store.
func InspectFile(path string, enc []byte) (*Info, error) {
	format := lineFormat(path)
	if format == "" {
		return Inspect(enc)
	}
	tree, err := common.StoreForFormat(formats.FormatFromString(format), config.NewStoresConfig()).LoadEncryptedFile(enc)
	if err != nil {
		return nil, fmt.Errorf("sops: not a sops-encrypted %s file: %w", format, err)
	}
	info := &Info{HasMAC: strings.HasPrefix(tree.Metadata.MessageAuthenticationCode, "ENC[")}
	for _, g := range tree.Metadata.KeyGroups {
		for _, k := range g {
			if ak, ok := k.(*sopsage.MasterKey); ok {
				info.Recipients = append(info.Recipients, ak.Recipient)
			}
		}
	}
	sort.Strings(info.Recipients)
	leaves(tree.Branches, func(path string, v any) {
		s, isString := v.(string)
		info.Leaves = append(info.Leaves, Leaf{Path: path, Encrypted: isString && strings.HasPrefix(s, "ENC[AES256_GCM,")})
	})
	sort.Slice(info.Leaves, func(a, b int) bool { return info.Leaves[a].Path < info.Leaves[b].Path })
	return info, nil
}

// DecryptFile is Decrypt for the committed file at path: a dotenv or ini
// file is read with its own store; its values are named as its keys
// ("KEY", "section.key").
func DecryptFile(path string, enc []byte, identities string) (map[string]string, error) {
	format := lineFormat(path)
	if format == "" {
		return Decrypt(enc, identities)
	}
	tree, err := common.StoreForFormat(formats.FormatFromString(format), config.NewStoresConfig()).LoadEncryptedFile(enc)
	if err != nil {
		return nil, fmt.Errorf("sops: not a sops-encrypted %s file: %w", format, err)
	}
	if err := decryptTree(&tree, identities); err != nil {
		return nil, err
	}
	out := map[string]string{}
	leaves(tree.Branches, func(path string, v any) { out[path] = fmt.Sprint(v) })
	return out, nil
}

// leaves calls leaf with each value of the branches, named by its dotted
// path; comments are not values.
func leaves(branches sops.TreeBranches, leaf func(string, any)) {
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		join := func(k any) string {
			if prefix == "" {
				return fmt.Sprint(k)
			}
			return prefix + "." + fmt.Sprint(k)
		}
		switch t := v.(type) {
		case sops.TreeBranch:
			for _, item := range t {
				if _, comment := item.Key.(sops.Comment); !comment {
					walk(join(item.Key), item.Value)
				}
			}
		case []any:
			for i, c := range t {
				walk(join(i), c)
			}
		default:
			leaf(prefix, v)
		}
	}
	for _, b := range branches {
		walk("", b)
	}
}
