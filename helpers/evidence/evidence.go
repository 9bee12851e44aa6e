// Package evidence appends one record per acceptance run to REVIEW.md and to
// a JSONL sidecar (REVIEW.jsonl). Each record carries the hash of the one
// before it, so an edited or deleted entry breaks the chain (Verify). Records
// hold names, commits, hashes and fingerprints — never secret material.
package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/localfile"
	"github.com/cc-ci/acceptance/helpers/sshsig"
)

// Test is one C-test's outcome.
type Test struct {
	Name    string  `json:"name"`
	Result  string  `json:"result"` // pass, fail, skip
	Seconds float64 `json:"seconds"`
}

// Entry is one run.
type Entry struct {
	RunID         string            `json:"run_id"`
	Time          string            `json:"time"`              // UTC, RFC 3339
	Harness       string            `json:"harness,omitempty"` // the commit the harness was built from (buildinfo)
	Outcome       string            `json:"outcome"`
	Interrupted   string            `json:"interrupted,omitempty"`
	NotEvidence   string            `json:"not_evidence,omitempty"` // a debugging run (a reused machine): why it proves nothing
	Incus         string            `json:"incus"`
	IncusCert     string            `json:"incus_cert,omitempty"` // the server's certificate fingerprint, as it reported it
	Machine       string            `json:"machine,omitempty"`    // project/name
	Image         string            `json:"image,omitempty"`
	BaseRepo      string            `json:"base_repo,omitempty"` // the base repository's URL, without credentials
	BaseCommit    string            `json:"base_commit,omitempty"`
	SecretsCommit string            `json:"secrets_commit,omitempty"`
	FlakeLock     string            `json:"flake_lock_sha256,omitempty"`
	InstallDoc    string            `json:"install_manifest,omitempty"`
	Tests         []Test            `json:"tests"`
	Facts         map[string]string `json:"facts,omitempty"` // served cert, RAM arithmetic, leak counts …
	Destroy       string            `json:"destroy"`
	Prev          string            `json:"prev"`
	Hash          string            `json:"hash"`
	// Signer is the SHA256 fingerprint of the key that signed Hash (part of
	// what Hash covers); Sig its SSH signature (namespace Namespace), base64.
	Signer string `json:"signer,omitempty"`
	Sig    string `json:"sig,omitempty"`
}

// Namespace is the SSH signature namespace of evidence entries: what a
// reviewer passes to `ssh-keygen -Y verify -n`.
const Namespace = "ccci-review@cc-ci"

// Paths is where the evidence goes.
type Paths struct{ Markdown, JSONL string }

// PathsFor derives the sidecar from the Markdown path: REVIEW.md → REVIEW.jsonl.
func PathsFor(md string) Paths {
	return Paths{Markdown: md, JSONL: strings.TrimSuffix(md, filepath.Ext(md)) + ".jsonl"}
}

// Append chains e to the last entry, signs it when signer is not nil (the
// runner's key), and writes it to both files. Runs that share a chain (two
// CI jobs, the lab's seeding two at a time) take turns: the chain file is
// locked from reading its last entry to writing this one, so no two
// entries chain to the same one.
func Append(p Paths, e Entry, signer ssh.Signer) (Entry, error) {
	if err := os.MkdirAll(filepath.Dir(p.JSONL), 0o755); err != nil {
		return e, err
	}
	// Neither file is written through a symlink (or into a non-file): a
	// link planted where the evidence goes would send the entry elsewhere.
	// Both are checked before either is written, so the two stay one.
	for _, f := range []string{p.JSONL, p.Markdown} {
		if st, err := os.Lstat(f); err == nil && !st.Mode().IsRegular() {
			return e, fmt.Errorf("evidence: %s is not a regular file (%s): refusing to write through it", f, st.Mode().Type())
		}
	}
	unlock, err := lock(p.JSONL)
	if err != nil {
		return e, err
	}
	defer unlock()
	prev, err := lastHash(p.JSONL)
	if err != nil {
		return e, err
	}
	e.Prev, e.Hash, e.Signer, e.Sig = prev, "", "", ""
	if e.Time == "" {
		e.Time = time.Now().UTC().Format(time.RFC3339)
	}
	sort.Slice(e.Tests, func(i, j int) bool { return e.Tests[i].Name < e.Tests[j].Name })
	if signer != nil {
		e.Signer = ssh.FingerprintSHA256(signer.PublicKey())
	}
	e.Hash = hashOf(e)
	if signer != nil {
		sig, err := sshsig.Sign(signer, Namespace, []byte(e.Hash))
		if err != nil {
			return e, err
		}
		e.Sig = sshsig.Compact(sig)
	}
	line, err := json.Marshal(e)
	if err != nil {
		return e, err
	}
	if err := appendFile(p.JSONL, append(line, '\n')); err != nil {
		return e, err
	}
	return e, appendFile(p.Markdown, []byte(Markdown(e)))
}

// hashOf is the SHA-256 of the entry's JSON with Hash and Sig empty.
func hashOf(e Entry) string {
	e.Hash, e.Sig = "", ""
	b, _ := json.Marshal(e)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func lastHash(path string) (string, error) {
	entries, err := Read(path)
	if err != nil || len(entries) == 0 {
		return "", err
	}
	return entries[len(entries)-1].Hash, nil
}

// maxChain bounds what is read of a chain file (it may be handed to us).
const maxChain = 64 << 20

// Read returns every entry of a JSONL file (none if it does not exist). The
// file must be a regular file, not a symlink, and at most 64 MiB.
func Read(path string) ([]Entry, error) {
	b, err := localfile.Read(path, maxChain)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	out, err := ParseChain(b)
	if err != nil {
		return nil, fmt.Errorf("evidence: %s %w", path, err)
	}
	return out, nil
}

// ParseChain reads the entries of a chain's JSONL (as a file or a committed
// version holds it), without checking their links.
func ParseChain(b []byte) ([]Entry, error) {
	if len(b) > maxChain {
		return nil, fmt.Errorf("chain: %d bytes, more than %d", len(b), maxChain)
	}
	var out []Entry
	for n, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Chain reads a JSONL file and checks every entry's hash and its link to the
// one before: an edited, deleted or reordered entry is an error naming it.
func Chain(path string) ([]Entry, error) {
	entries, err := Read(path)
	if err != nil {
		return nil, err
	}
	prev := ""
	for i, e := range entries {
		if err := linkError(e, prev); err != nil {
			return nil, fmt.Errorf("evidence: %s entry %d (run %s): %w", path, i+1, e.RunID, err)
		}
		prev = e.Hash
	}
	return entries, nil
}

// linkError says why e does not follow the entry whose hash is prev, or
// was changed after it was written; nil if it holds.
func linkError(e Entry, prev string) error {
	if e.Prev != prev {
		return fmt.Errorf("chain broken: prev %.12s, expected %.12s (reordered, or an entry removed before it)", e.Prev, prev)
	}
	if h := hashOf(e); h != e.Hash {
		return fmt.Errorf("content changed after it was written (hash %.12s, recorded %.12s)", h, e.Hash)
	}
	return nil
}

// Verify checks the chain of a JSONL file (see Chain).
func Verify(path string) error {
	_, err := Chain(path)
	return err
}

// Markdown renders an entry for REVIEW.md.
func Markdown(e Entry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Run %s — %s — %s\n\n", e.RunID, e.Time, strings.ToUpper(e.Outcome))
	if e.Interrupted != "" {
		fmt.Fprintf(&b, "- **interrupted**: %s\n", e.Interrupted)
	}
	if e.NotEvidence != "" {
		fmt.Fprintf(&b, "- **%s**\n", e.NotEvidence)
	}
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "- %s: `%s`\n", k, v)
		}
	}
	row("harness", e.Harness)
	row("Incus", e.Incus)
	row("Incus certificate", e.IncusCert)
	row("machine", e.Machine)
	row("image", e.Image)
	row("base repo", e.BaseRepo)
	row("base commit", e.BaseCommit)
	row("secrets commit", e.SecretsCommit)
	row("flake.lock sha256", e.FlakeLock)
	row("install.md manifest", e.InstallDoc)
	keys := make([]string, 0, len(e.Facts))
	for k := range e.Facts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		row(k, e.Facts[k])
	}
	row("destroy", e.Destroy)
	if len(e.Tests) > 0 {
		b.WriteString("\n| test | result | seconds |\n|---|---|---|\n")
		for _, t := range e.Tests {
			fmt.Fprintf(&b, "| %s | %s | %.1f |\n", t.Name, strings.ToUpper(t.Result), t.Seconds)
		}
	}
	fmt.Fprintf(&b, "\nchain: prev `%.16s` → this `%.16s`", e.Prev, e.Hash)
	if e.Signer != "" {
		fmt.Fprintf(&b, "; signed by `%s`", e.Signer)
	}
	b.WriteString("\n")
	return b.String()
}

// lock takes an exclusive flock(2) on the chain file (made if missing;
// never through a symlink) and returns its release.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("evidence: lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("evidence: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing the last descriptor releases the lock
}

// appendFile appends to a regular file, made if missing, never through a
// symlink (O_NOFOLLOW: the check in Append holds even if the path changes).
func appendFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("evidence: %w", err)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("evidence: %s is not a regular file: refusing to write into it", path)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Verdict is what Check says of one entry.
type Verdict struct {
	N         int // 1-based position in the chain
	Entry     Entry
	Principal string // from allowed_signers
	Err       error  // nil: chained, untampered, signed by an allowed key
}

// Check verifies a chain file entry by entry: its link to the one before,
// its hash, and its signature by a key allowed_signers lists for Namespace.
// Entries before the run id since (if not empty) need not be signed. Every
// entry gets a verdict; a broken link or hash also breaks every later one.
func Check(path string, allowed []sshsig.Signer, since string) ([]Verdict, error) {
	entries, err := Read(path)
	if err != nil {
		return nil, err
	}
	var out []Verdict
	prev, broken, signedFrom := "", false, since == ""
	for i, e := range entries {
		v := Verdict{N: i + 1, Entry: e}
		signedFrom = signedFrom || e.RunID == since
		linkErr := linkError(e, prev)
		switch {
		case broken:
			v.Err = errors.New("after a broken link: cannot be trusted")
		case linkErr != nil:
			v.Err, broken = linkErr, true
		case !signedFrom && e.Sig == "":
			v.Principal = "(unsigned, before " + since + ")"
		default:
			v.Principal, v.Err = checkSignature(e, allowed)
		}
		prev = e.Hash
		out = append(out, v)
	}
	if since != "" && !signedFrom {
		return out, fmt.Errorf("evidence: %s has no run %s", path, since)
	}
	return out, nil
}

func checkSignature(e Entry, allowed []sshsig.Signer) (string, error) {
	if e.Sig == "" {
		return "", errors.New("unsigned")
	}
	armoured, err := sshsig.Armour(e.Sig)
	if err != nil {
		return "", err
	}
	key, err := sshsig.Verify(armoured, Namespace, []byte(e.Hash))
	if err != nil {
		return "", err
	}
	if fp := ssh.FingerprintSHA256(key); fp != e.Signer {
		return "", fmt.Errorf("signed by %s, but the entry names %s", fp, e.Signer)
	}
	p, ok := sshsig.Allowed(allowed, key, Namespace)
	if !ok {
		return "", fmt.Errorf("signed by %s, which allowed_signers does not list for %s", ssh.FingerprintSHA256(key), Namespace)
	}
	return p, nil
}
