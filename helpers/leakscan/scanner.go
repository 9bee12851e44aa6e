package leakscan

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cc-ci/acceptance/helpers/gitexec"
	"github.com/cc-ci/acceptance/helpers/localfile"
)

// Scanner searches for a fixed set of needles.
type Scanner struct {
	needles []Needle
	m       *Matcher
	Workers int // parallel files; default GOMAXPROCS
	Chunk   int // read size; default 1 MiB
}

// New builds a scanner for the needles.
func New(needles []Needle) *Scanner {
	bs := make([][]byte, len(needles))
	for i, n := range needles {
		bs[i] = n.Bytes
	}
	return &Scanner{needles: needles, m: NewMatcher(bs), Workers: runtime.GOMAXPROCS(0), Chunk: 1 << 20}
}

// Stats say how much was read.
type Stats struct {
	Files    int64         `json:"files"`
	Bytes    int64         `json:"bytes"`
	Allowed  int64         `json:"allowed_in_sops"` // findings dropped: wholly inside a sops file's ENC[…] values or its sops metadata
	Duration time.Duration `json:"duration_ns"`
	Canary   bool          `json:"canary_found"`
}

// buffers are reused across files: a fresh megabyte per small file would
// cost more than the scan itself.
var buffers sync.Pool

func getBuffer(n int) []byte {
	if b, ok := buffers.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

func putBuffer(b []byte) { buffers.Put(&b) }

// scanReader streams r in chunks, carrying the matcher's overlap across them.
func scanReader(r io.Reader, m *Matcher, chunk int, emit func(Match)) error {
	ov := m.Overlap()
	buf := getBuffer(ov + chunk)
	defer putBuffer(buf)
	carried := 0 // bytes at the start of buf from the previous chunk
	var base int64
	for {
		n, err := io.ReadFull(r, buf[carried:])
		if n > 0 {
			text := buf[:carried+n]
			off := base - int64(carried)
			m.Find(text, carried, func(x Match) { emit(Match{Needle: x.Needle, At: int(off) + x.At}) })
			base += int64(n)
			keep := min(ov, len(text))
			copy(buf, text[len(text)-keep:])
			carried = keep
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Reader scans one stream; where names it in findings.
func (s *Scanner) Reader(where string, r io.Reader) ([]Finding, error) {
	var out []Finding
	err := scanReader(r, s.m, s.Chunk, func(x Match) {
		n := s.needles[x.Needle]
		out = append(out, Finding{Secret: n.Secret, Variant: n.Variant, Where: where, Offset: int64(x.At), Length: int64(len(n.Bytes))})
	})
	return out, err
}

// DirProven scans root and proves the scan worked: a canary is planted in a
// temp file inside root (removed after) or, when root is read-only (a NixOS
// /nix/store), borrowed from a file already there; the scan fails unless the
// canary is found in its file.
func (s *Scanner) DirProven(ctx context.Context, root string) ([]Finding, Stats, error) {
	path, c, err := plantCanary(root)
	if err == nil {
		defer os.Remove(path)
	} else if path, c, err = borrowCanary(root); err != nil {
		return nil, Stats{}, fmt.Errorf("leakscan: no canary possible in %s: %w", root, err)
	}
	sc := New(append(append([]Needle(nil), s.needles...), c))
	sc.Workers, sc.Chunk = s.Workers, s.Chunk
	found, st, err := sc.Dir(ctx, root)
	if err != nil {
		return nil, st, err
	}
	var out []Finding
	for _, f := range found {
		if f.Secret == canaryName {
			st.Canary = st.Canary || f.Where == path
			continue
		}
		out = append(out, f)
	}
	if !st.Canary {
		return out, st, fmt.Errorf("leakscan: the canary in %s was not found: the scan of %s cannot be trusted", path, root)
	}
	return out, st, nil
}

// Dir scans every regular file under root (symlinks are not followed), in
// parallel. Findings in sops-encrypted files (judged by content) are dropped.
func (s *Scanner) Dir(ctx context.Context, root string) ([]Finding, Stats, error) {
	start := time.Now()
	paths := make(chan string, 256)
	var (
		mu       sync.Mutex
		out      []Finding
		st       Stats
		firstErr error
		files    atomic.Int64
		bytesN   atomic.Int64
	)
	var wg sync.WaitGroup
	for w := 0; w < max(s.Workers, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range paths {
				found, n, err := s.file(p)
				files.Add(1)
				bytesN.Add(n)
				mu.Lock()
				if err != nil && firstErr == nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
					firstErr = err
				}
				if len(found) > 0 {
					kept := outsideSops(found, readSmall(p))
					st.Allowed += int64(len(found) - len(kept))
					found = kept
				}
				out = append(out, found...)
				mu.Unlock()
			}
		}()
	}
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d.Type().IsRegular() {
			paths <- p
		}
		return nil
	})
	close(paths)
	wg.Wait()
	st.Files, st.Bytes, st.Duration = files.Load(), bytesN.Load(), time.Since(start)
	if walkErr != nil {
		return nil, st, fmt.Errorf("leakscan: walk %s: %w", root, walkErr)
	}
	if firstErr != nil {
		return nil, st, firstErr
	}
	sortFindings(out)
	return out, st, nil
}

// borrowCanary takes 32 bytes from the middle of a file already under root.
func borrowCanary(root string) (string, Needle, error) {
	var path string
	var piece []byte
	errFound := errors.New("found")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil || len(b) < 256 {
			return nil
		}
		mid := b[len(b)/2 : len(b)/2+32]
		if bytes.Count(mid, mid[:1]) == len(mid) {
			return nil // one repeated byte proves little
		}
		path, piece = p, append([]byte(nil), mid...)
		return errFound
	})
	if path == "" {
		if err == nil {
			err = errors.New("no file of 256 bytes or more to borrow from")
		}
		return "", Needle{}, err
	}
	return path, Needle{Secret: canaryName, Variant: "raw", Bytes: piece}, nil
}

func (s *Scanner) file(p string) ([]Finding, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	cr := &countingReader{r: f}
	found, err := s.Reader(p, cr)
	return found, cr.n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// readSmall reads a file of at most 1 MiB (nil otherwise): sops files are
// small, and a larger one is simply never exempt.
func readSmall(p string) []byte {
	b, err := localfile.Read(p, 1<<20)
	if err != nil {
		return nil
	}
	return b
}

// encValue is one sops-encrypted value.
var encValue = regexp.MustCompile(`ENC\[AES256_GCM,[^\]\s]*\]`)

// sopsSpans are the byte ranges of a sops file (recognised by its content,
// never its name) that are ciphertext or sops's own metadata: its ENC[…]
// values and its top-level `sops:` block. Everything else — keys, comments,
// values sops left unencrypted, text pasted beside them — is scanned.
func sopsSpans(b []byte) [][2]int64 {
	if !looksSops(b) {
		return nil
	}
	var spans [][2]int64
	for _, m := range encValue.FindAllIndex(b, -1) {
		spans = append(spans, [2]int64{int64(m[0]), int64(m[1])})
	}
	if i := bytes.Index(b, []byte("\nsops:\n")); i >= 0 {
		// YAML: the block runs while lines are indented (or empty).
		end := len(b)
		for j := i + len("\nsops:\n"); j < len(b); {
			nl := bytes.IndexByte(b[j:], '\n')
			line := b[j:]
			if nl >= 0 {
				line = b[j : j+nl]
			}
			if len(line) > 0 && line[0] != ' ' && line[0] != '\t' {
				end = j
				break
			}
			if nl < 0 {
				break
			}
			j += nl + 1
		}
		spans = append(spans, [2]int64{int64(i), int64(end)})
	}
	return spans
}

func looksSops(b []byte) bool {
	return bytes.Contains(b, []byte("ENC[AES256_GCM,")) &&
		(bytes.Contains(b, []byte("\nsops:\n")) || bytes.Contains(b, []byte(`"sops": {`)))
}

// outsideSops keeps the findings that are not wholly inside a sops span of content.
func outsideSops(found []Finding, content []byte) []Finding {
	spans := sopsSpans(content)
	if len(spans) == 0 {
		return found
	}
	var kept []Finding
	for _, f := range found {
		inside := false
		for _, sp := range spans {
			if f.Offset >= sp[0] && f.Offset+f.Length <= sp[1] {
				inside = true
				break
			}
		}
		if !inside {
			kept = append(kept, f)
		}
	}
	return kept
}

const canaryName = "leakscan-canary"

func plantCanary(dir string) (string, Needle, error) {
	c := canaryNeedle()
	f, err := os.CreateTemp(dir, ".ccci-canary-*")
	if err != nil {
		return "", Needle{}, fmt.Errorf("leakscan: plant the canary in %s: %w", dir, err)
	}
	defer f.Close()
	if _, err := f.Write(append(append([]byte("x "), c.Bytes...), " y\n"...)); err != nil {
		return "", Needle{}, err
	}
	return f.Name(), c, nil
}

func withoutCanary(fs []Finding) ([]Finding, bool) {
	out := fs[:0]
	seen := false
	for _, f := range fs {
		if f.Secret == canaryName {
			seen = true
			continue
		}
		out = append(out, f)
	}
	return out, seen
}

func sortFindings(fs []Finding) {
	sort.Slice(fs, func(a, b int) bool {
		if fs[a].Where != fs[b].Where {
			return fs[a].Where < fs[b].Where
		}
		return fs[a].Offset < fs[b].Offset
	})
}

// Git scans every object in a repo's object database — all history,
// unreachable objects, merge-only content, binaries — in one stream from
// `git cat-file --batch-all-objects --batch`. The canary blob lives in an
// object store of its own, attached as an alternate for this one command:
// nothing is written into the repo, which may be a target's clone.
func (s *Scanner) Git(ctx context.Context, repo string) ([]Finding, Stats, error) {
	start := time.Now()
	c := canaryNeedle()
	canaryStore, err := os.MkdirTemp("", "ccci-canary-")
	if err != nil {
		return nil, Stats{}, err
	}
	defer os.RemoveAll(canaryStore)
	id, err := gitHashObject(ctx, canaryStore, []byte("canary "+string(c.Bytes)+"\n"))
	if err != nil {
		return nil, Stats{}, err
	}
	sc := New(append(append([]Needle(nil), s.needles...), c))
	paths, err := objectPaths(ctx, repo)
	if err != nil {
		return nil, Stats{}, err
	}
	cmd, stdout, err := gitexec.Stream(ctx, repo, []string{"GIT_ALTERNATE_OBJECT_DIRECTORIES=" + filepath.Join(canaryStore, "objects")},
		"cat-file", "--batch-all-objects", "--batch", "--unordered")
	if err != nil {
		return nil, Stats{}, fmt.Errorf("leakscan: %w", err)
	}
	br := bufio.NewReaderSize(stdout, 1<<20)
	var out []Finding
	var st Stats
	for {
		header, err := br.ReadString('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, st, err
		}
		f := strings.Fields(header) // <id> <type> <size>
		if len(f) != 3 {
			return nil, st, fmt.Errorf("leakscan: git cat-file in %s: unexpected header %q", repo, header)
		}
		size, _ := strconv.ParseInt(f[2], 10, 64)
		body := io.LimitReader(br, size)
		where := "git object " + f[0]
		if p := paths[f[0]]; p != "" {
			where += " (" + p + ")"
		}
		var raw bytes.Buffer
		found, err := sc.Reader(where, io.TeeReader(body, &sopsProbe{buf: &raw, limit: 1 << 20}))
		if err != nil {
			return nil, st, err
		}
		if _, err := br.Discard(1); err != nil { // the newline after each object
			return nil, st, err
		}
		st.Files++
		st.Bytes += size
		if len(found) > 0 && int64(raw.Len()) == size { // an object larger than the probe is never exempt
			kept := outsideSops(found, raw.Bytes())
			st.Allowed += int64(len(found) - len(kept))
			found = kept
		}
		out = append(out, found...)
	}
	if err := cmd.Wait(); err != nil {
		return nil, st, fmt.Errorf("leakscan: git cat-file in %s: %w", repo, err)
	}
	st.Duration = time.Since(start)
	out, st.Canary = withoutCanary(out)
	if !st.Canary {
		return out, st, fmt.Errorf("leakscan: the canary object %s attached to %s was not found: the scan cannot be trusted", id, repo)
	}
	sortFindings(out)
	return out, st, nil
}

// sopsProbe keeps the first bytes of an object to judge it a sops file.
type sopsProbe struct {
	buf   *bytes.Buffer
	limit int
}

func (p *sopsProbe) Write(b []byte) (int, error) {
	if room := p.limit - p.buf.Len(); room > 0 {
		p.buf.Write(b[:min(room, len(b))])
	}
	return len(b), nil
}

// canaryNeedle is a random needle no real data contains.
func canaryNeedle() Needle {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return Needle{Secret: canaryName, Variant: "raw", Bytes: []byte("ccci-canary-" + hex.EncodeToString(b))}
}

// gitHashObject writes data as a blob into a new bare object store at dir.
func gitHashObject(ctx context.Context, dir string, data []byte) (string, error) {
	if _, stderr, err := gitexec.Run(ctx, nil, nil, "init", "-q", "--bare", dir); err != nil {
		return "", fmt.Errorf("leakscan: canary store: %w: %s", err, stderr)
	}
	out, stderr, err := gitexec.Run(ctx, nil, bytes.NewReader(data), "-C", dir, "hash-object", "-w", "--stdin")
	if err != nil {
		return "", fmt.Errorf("leakscan: plant the canary object in %s: %w: %s", dir, err, stderr)
	}
	return strings.TrimSpace(string(out)), nil
}

// objectPaths maps reachable object ids to a path they appear at.
func objectPaths(ctx context.Context, repo string) (map[string]string, error) {
	out, err := gitexec.In(ctx, repo, repo, "rev-list", "--all", "--objects")
	if err != nil {
		return nil, fmt.Errorf("leakscan: %w", err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		id, p, ok := strings.Cut(line, " ")
		if ok && p != "" {
			m[id] = p
		}
	}
	return m, nil
}
