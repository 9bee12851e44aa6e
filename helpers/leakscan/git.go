package leakscan

// Scanning a git object database: every object of all history, the scan
// proven by a canary object the repo itself does not hold.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/gitexec"
)

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
	paths, err := gitexec.ObjectPaths(ctx, repo)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("leakscan: %w", err)
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
			kept := outsideSops(found, where, raw.Bytes())
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
	out = st.keepUndecodable(out)
	if !st.Canary {
		return out, st, fmt.Errorf("leakscan: the canary object %s attached to %s was not found: the scan cannot be trusted", id, repo)
	}
	sortFindings(out)
	return out, st, nil
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
