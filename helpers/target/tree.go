package target

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/gitexec"
)

// treeTar is the committed tree of commit as a tar stream, read from the
// git objects alone (ls-tree, cat-file) — not `git archive`, which obeys
// the tree's own .gitattributes: export-subst rewrites a file and
// export-ignore drops one, so what a machine evaluated would not be what
// is committed. Directories, files (0644, 0755), symlinks as such, and a
// submodule as an empty directory (as git archive has it); every entry
// dated at the commit.
func treeTar(ctx context.Context, repo, commit string) ([]byte, error) {
	where := repoName(repo)
	when, err := gitexec.In(ctx, repo, where, "show", "-s", "--format=%ct", commit, "--")
	if err != nil {
		return nil, err
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(string(when)), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%s: commit %s has no time: %q", where, commit, when)
	}
	mtime := time.Unix(secs, 0)
	list, err := gitexec.In(ctx, repo, where, "ls-tree", "-r", "-t", "-z", "--full-tree", commit)
	if err != nil {
		return nil, err
	}
	type entry struct{ mode, kind, oid, path string }
	var entries []entry
	var blobs bytes.Buffer
	for _, rec := range strings.Split(strings.TrimSuffix(string(list), "\x00"), "\x00") {
		if rec == "" {
			continue
		}
		meta, p, ok := strings.Cut(rec, "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 || p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.HasPrefix(p, "../") {
			return nil, fmt.Errorf("%s: ls-tree printed an entry it should not: %.80q", where, rec)
		}
		entries = append(entries, entry{f[0], f[1], f[2], p})
		if f[1] == "blob" {
			blobs.WriteString(f[2] + "\n")
		}
	}
	contents, err := catBlobs(ctx, repo, &blobs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, e := range entries {
		h := &tar.Header{Name: e.path, ModTime: mtime}
		switch {
		case e.kind == "tree", e.kind == "commit": // a submodule: an empty directory
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, e.path+"/", 0o755
		case e.mode == "120000":
			h.Typeflag, h.Linkname = tar.TypeSymlink, string(contents[e.oid])
		case e.mode == "100755":
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o755, int64(len(contents[e.oid]))
		case e.mode == "100644":
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, int64(len(contents[e.oid]))
		default:
			return nil, fmt.Errorf("%s: %s has a mode git does not write (%s)", where, e.path, e.mode)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(contents[e.oid]); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil { // the trailer: without it tar -x reads an unexpected EOF
		return nil, err
	}
	return out.Bytes(), nil
}

// catBlobs reads the blobs named one per line in ids (git cat-file --batch),
// within gitexec's bound on what one command prints.
func catBlobs(ctx context.Context, repo string, ids io.Reader) (map[string][]byte, error) {
	out, stderr, err := gitexec.Run(ctx, nil, ids, "-C", repo, "cat-file", "--batch")
	if err != nil {
		return nil, fmt.Errorf("git cat-file --batch: %w: %s", err, stderr)
	}
	blobs := map[string][]byte{}
	r := bufio.NewReader(bytes.NewReader(out))
	for {
		header, err := r.ReadString('\n')
		if err == io.EOF && header == "" {
			return blobs, nil
		}
		f := strings.Fields(header)
		if err != nil || len(f) != 3 || f[1] != "blob" {
			return nil, fmt.Errorf("git cat-file --batch printed %.80q, not an object header", header)
		}
		size, err := strconv.Atoi(f[2])
		if err != nil || size < 0 {
			return nil, fmt.Errorf("git cat-file --batch: size %q", f[2])
		}
		b := make([]byte, size+1) // the content and its newline
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("git cat-file --batch: object %s cut short", f[0])
		}
		blobs[f[0]] = b[:size]
	}
}
