// Package repoint proves that the base's instance parameters are
// parameters (plan §2: another admin "can repoint cc-ci by editing them …
// a one-line edit, not a fork"). Each parameter is set once, as a quoted
// value in a file Nix reads; a copy of the base with that one line changed
// to a fresh value builds a system that holds the new value where the
// running one held the old, and the old nowhere. A module that names the
// domain literally keeps the old value in the rebuilt closure, naming the
// file.
package repoint

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"slices"
	"strings"
)

// Param is an instance parameter: what it is ("the domain") and its value.
type Param struct{ Name, Value string }

// Parameters are the instance parameters the plan names whose values the
// harness is given: the domain and the gateway (the recipients are the
// secrets repo's .sops.yaml as much as the base's, and change no build).
func Parameters(domain, gateway string) []Param {
	var ps []Param
	for _, p := range []Param{{Name: "the domain", Value: domain}, {Name: "the gateway", Value: gateway}} {
		if p.Value != "" {
			ps = append(ps, p)
		}
	}
	return ps
}

// Site is where a parameter is set: a file of the base and its line.
type Site struct {
	Path string
	Line int
	off  int // byte offset of the quoted value in the file
}

func (s Site) String() string { return fmt.Sprintf("%s:%d", s.Path, s.Line) }

// Change is one parameter repointed at its one site.
type Change struct {
	Param
	New  string
	Site Site
}

// setIn are the files a parameter may be set in: those Nix reads natively
// (import, builtins.fromJSON, builtins.fromTOML). Docs may name the value
// as often as they like; they are not where it is set.
var setIn = []string{".nix", ".json", ".toml"}

// maxFile bounds a file of the tree that is searched: larger ones are data,
// not where a parameter is set.
const maxFile = 1 << 20

// Sites are where value is set in the base: each occurrence of it as a
// whole double-quoted string ("ci.example.net") in a regular file the base
// commits with a Nix-readable extension. One site is a parameter; none is
// a value the base does not set; more are copies a one-line edit misses.
// baseTar is the base's committed tree (target.Repos.Trees).
func Sites(baseTar []byte, value string) ([]Site, error) {
	if value == "" || strings.ContainsAny(value, "\"\\\n") {
		return nil, fmt.Errorf("repoint: %q cannot be searched for as a quoted value", value)
	}
	quoted := []byte(`"` + value + `"`)
	var sites []Site
	err := eachFile(baseTar, func(name string, b []byte) error {
		if !slices.Contains(setIn, path.Ext(name)) || len(b) > maxFile {
			return nil
		}
		for off := 0; ; {
			i := bytes.Index(b[off:], quoted)
			if i < 0 {
				return nil
			}
			at := off + i
			sites = append(sites, Site{Path: name, Line: 1 + bytes.Count(b[:at], []byte("\n")), off: at + 1})
			off = at + len(quoted)
		}
	})
	return sites, err
}

// eachFile calls fn with each regular file of a tar of a committed tree
// (entries are typed: a symlink is never followed, only skipped).
func eachFile(tarball []byte, fn func(name string, b []byte) error) error {
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("repoint: read the base's tree: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxFile+1))
		if err != nil {
			return fmt.Errorf("repoint: read %s of the base's tree: %w", h.Name, err)
		}
		if err := fn(path.Clean(h.Name), b); err != nil {
			return err
		}
	}
}

// Fresh is a value of old's kind that no target holds: an address from the
// documentation ranges for an address (a module may parse it), a name
// under the reserved .invalid otherwise.
func Fresh(old string) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	if a, err := netip.ParseAddr(old); err == nil {
		if a.Is4() {
			return fmt.Sprintf("192.0.2.%d", 1+int(r[0])%254) // TEST-NET-1, RFC 5737
		}
		return fmt.Sprintf("2001:db8::%x", uint16(r[0])<<8|uint16(r[1])) // RFC 3849
	}
	return "repointed-" + hex.EncodeToString(r[:]) + ".invalid" // RFC 2606
}

// Repointed is baseTar with each change made at its site, and nothing else:
// the copy an admin's one-line edits make.
func Repointed(baseTar []byte, changes []Change) ([]byte, error) {
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(baseTar))
	done := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("repoint: read the base's tree: %w", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("repoint: read %s of the base's tree: %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			var n int
			if b, n, err = edit(path.Clean(h.Name), b, changes); err != nil {
				return nil, err
			}
			done += n
			h.Size = int64(len(b))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if done != len(changes) {
		return nil, fmt.Errorf("repoint: %d of %d sites found in the base's tree", done, len(changes))
	}
	if err := tw.Close(); err != nil { // the trailer: tar(1) refuses an archive without it
		return nil, err
	}
	return out.Bytes(), nil
}

// edit makes the changes sited in file name, from the last offset to the
// first so that earlier offsets hold.
func edit(name string, b []byte, changes []Change) ([]byte, int, error) {
	var here []Change
	for _, c := range changes {
		if c.Site.Path == name {
			here = append(here, c)
		}
	}
	slices.SortFunc(here, func(a, b Change) int { return b.Site.off - a.Site.off })
	for _, c := range here {
		end := c.Site.off + len(c.Value)
		if c.Site.off <= 0 || end > len(b) || string(b[c.Site.off:end]) != c.Value {
			return nil, 0, fmt.Errorf("repoint: %s of %s is not at %s", c.Value, c.Name, c.Site)
		}
		b = slices.Concat(b[:c.Site.off], []byte(c.New), b[end:])
	}
	return b, len(here), nil
}
