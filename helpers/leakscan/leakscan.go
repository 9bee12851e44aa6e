// Package leakscan looks for KNOWN secrets — the target's own, decrypted in
// memory — in git object stores and on machines. Findings name the secret and
// the encoding, never the bytes.
//
// This is the exact-match scanner C1/C3 use today: raw, base64 (all three
// alignments), hex. The full scanner of issue 5 (more encodings, Aho-Corasick,
// a benchmark against ripgrep) will replace its internals behind this API.
package leakscan

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/remote"
)

// MinLen is the shortest secret worth searching for; shorter ones would
// match by chance.
const MinLen = 8

// Needle is one searchable form of a secret.
type Needle struct {
	Secret  string // the secret's name
	Variant string // raw, base64@0, base64@1, base64@2, hex
	Bytes   []byte
}

// Finding is where a needle was found.
type Finding struct {
	Secret, Variant string
	Where           string // "git object <id>" or a file path
}

func (f Finding) String() string { return fmt.Sprintf("%s (%s) in %s", f.Secret, f.Variant, f.Where) }

// Needles expands secrets into every variant. Multi-line secrets (PEM) are
// searched line by line too, so a key copied with other line endings is found.
func Needles(secrets map[string]string) []Needle {
	var out []Needle
	add := func(name, variant string, b []byte) {
		if len(b) >= MinLen {
			out = append(out, Needle{Secret: name, Variant: variant, Bytes: b})
		}
	}
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		v := strings.TrimSpace(secrets[name])
		forms := []string{v}
		if strings.Contains(v, "\n") {
			forms = nil
			for _, l := range strings.Split(v, "\n") {
				if l = strings.TrimSpace(l); !strings.HasPrefix(l, "-----") {
					forms = append(forms, l)
				}
			}
		}
		for _, f := range forms {
			add(name, "raw", []byte(f))
			add(name, "hex", []byte(hex.EncodeToString([]byte(f))))
			for shift := 0; shift < 3; shift++ {
				// The part of the encoding that does not depend on what surrounds the secret.
				enc := base64.StdEncoding.EncodeToString(append(make([]byte, shift), f...))
				start := (shift*4 + 2) / 3
				end := len(enc) - 4
				if end > start {
					add(name, fmt.Sprintf("base64@%d", shift), []byte(enc[start:end]))
				}
			}
		}
	}
	return out
}

// Data searches a blob.
func Data(where string, data []byte, needles []Needle) []Finding {
	var out []Finding
	for _, n := range needles {
		if bytes.Contains(data, n.Bytes) {
			out = append(out, Finding{Secret: n.Secret, Variant: n.Variant, Where: where})
		}
	}
	return out
}

// GitObjects searches every object in a repo's object database — all
// history, unreachable objects included — not just the checked-out tree.
func GitObjects(ctx context.Context, repo string, needles []Needle) ([]Finding, error) {
	ids, err := exec.CommandContext(ctx, "git", "-C", repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)").Output()
	if err != nil {
		return nil, fmt.Errorf("leakscan: list objects of %s: %w", repo, err)
	}
	var out []Finding
	for _, id := range strings.Fields(string(ids)) {
		b, err := exec.CommandContext(ctx, "git", "-C", repo, "cat-file", "-p", id).Output()
		if err != nil {
			return nil, fmt.Errorf("leakscan: read object %s of %s: %w", id, repo, err)
		}
		out = append(out, Data("git object "+id, b, needles)...)
	}
	return out, nil
}

// Remote searches directories on a machine with grep -F; the needles go
// over the SSH session's stdin and never touch the machine's disk. Only file
// names come back; each file is then attributed to its needles one by one.
func Remote(ctx context.Context, cl *remote.Client, dirs []string, needles []Needle) ([]Finding, error) {
	var patterns bytes.Buffer
	for _, n := range needles {
		patterns.Write(n.Bytes)
		patterns.WriteByte('\n')
	}
	q := make([]string, len(dirs))
	for i, d := range dirs {
		q[i] = remote.ShellQuote(d)
	}
	// grep exits 1 when nothing matches; anything above is an error.
	cmd := "rc=0; grep -rlsF -f /dev/stdin " + strings.Join(q, " ") + " || rc=$?; [ \"$rc\" -le 1 ]"
	res, err := cl.RunInput(ctx, cmd, patterns.Bytes(), 10*time.Minute)
	if err != nil {
		return nil, fmt.Errorf("leakscan: search %s: %w", strings.Join(dirs, " "), err)
	}
	var out []Finding
	for _, file := range strings.Fields(string(res.Stdout)) {
		for _, n := range needles {
			r, err := cl.RunInput(ctx, "grep -qsF -f /dev/stdin "+remote.ShellQuote(file), append(n.Bytes, '\n'), time.Minute)
			if err == nil && r.ExitCode == 0 {
				out = append(out, Finding{Secret: n.Secret, Variant: n.Variant, Where: file})
			}
		}
	}
	return out, nil
}
