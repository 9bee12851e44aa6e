package leakscan

// Scanning a directory tree: every regular file, no symlink followed, the
// scan proven by a canary planted in the tree.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cc-ci/acceptance/helpers/localfile"
)

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
	sc.Workers, sc.Chunk, sc.Walk, sc.MaxDecompressed = s.Workers, s.Chunk, s.Walk, s.MaxDecompressed
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
// parallel, as s.Walk says. Findings in sops-encrypted files (judged by
// content) are dropped. A file that cannot be read is a finding naming it
// (Unsearched); one that vanishes while the scan runs is not.
func (s *Scanner) Dir(ctx context.Context, root string) ([]Finding, Stats, error) {
	start := time.Now()
	paths := make(chan string, 256)
	var (
		mu     sync.Mutex
		out    []Finding
		st     Stats
		files  atomic.Int64
		bytesN atomic.Int64
	)
	problem := func(p, what string) {
		mu.Lock()
		defer mu.Unlock()
		out = append(out, Finding{Variant: Unsearched, Where: p, Problem: what})
	}
	var wg sync.WaitGroup
	for w := 0; w < max(s.Workers, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range paths {
				found, n, err := s.file(p)
				files.Add(1)
				bytesN.Add(n)
				if err != nil && !errors.Is(err, fs.ErrNotExist) {
					problem(p, "not read: "+err.Error())
				}
				if len(found) > 0 {
					kept := outsideSops(found, p, readSmall(p))
					mu.Lock()
					st.Allowed += int64(len(found) - len(kept))
					mu.Unlock()
					found = kept
				}
				mu.Lock()
				out = append(out, found...)
				mu.Unlock()
			}
		}()
	}
	var queued int64
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				problem(p, "not read: "+err.Error())
			}
			return nil
		}
		if d.IsDir() && p != root && s.Walk.skips(p) {
			return filepath.SkipDir
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		if s.Walk.ReadableByOthers || s.Walk.MaxBytes > 0 {
			info, err := d.Info()
			if err != nil {
				return nil // gone since it was listed
			}
			need := fs.FileMode(4) // read a file
			if d.IsDir() {
				need = 1 // search a directory
			}
			if s.Walk.ReadableByOthers && !openToOthers(info, need) {
				if d.IsDir() {
					return filepath.SkipDir // nothing below is reachable by others
				}
				return nil
			}
			if !d.IsDir() {
				if queued += info.Size(); s.Walk.MaxBytes > 0 && queued > s.Walk.MaxBytes {
					problem(p, fmt.Sprintf("the scan's bound of %d bytes was reached here: this file and the rest were not searched", s.Walk.MaxBytes))
					return filepath.SkipAll
				}
			}
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
	out = st.keepUndecodable(out)
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

// openFile opens a file to scan (a seam: as root, tests cannot make a file
// unreadable).
var openFile = func(p string) (io.ReadCloser, error) { return os.Open(p) }

func (s *Scanner) file(p string) ([]Finding, int64, error) {
	f, err := openFile(p)
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
	// Readable by all, so that a scan of what others can read finds it too:
	// it is random, not a secret.
	return f.Name(), c, f.Chmod(0o644)
}
