package leakscan

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"

	"github.com/cc-ci/acceptance/helpers/secretforms"
)

// A secret with a quote and a backslash, as a .drv, JSON or .nix file
// writes it, and in UTF-16.
func TestEscapedAndWideFormsAreFound(t *testing.T) {
	const quoted = `pass"word\with-quotes-0123`
	s := scanner(t, map[string]string{"registry_password": quoted})
	for _, f := range append(secretforms.Escaped(quoted), secretforms.UTF16(quoted)...) {
		t.Run(f.Variant, func(t *testing.T) {
			got := findIn(t, s, append(append([]byte(`Derive([("out","`), f.Bytes...), `")])`...))
			require.NotEmpty(t, got, "the secret, %s", f.Variant)
			assert.Equal(t, "registry_password", got[0].Secret)
		})
	}
}

func compress(t *testing.T, kind string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	var err error
	switch kind {
	case "gzip":
		w = gzip.NewWriter(&b)
	case "xz":
		w, err = xz.NewWriter(&b)
	case "zstd":
		w, err = zstd.NewWriter(&b)
	}
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return b.Bytes()
}

// Inside an initrd (a zstd or xz cpio), a gzipped file, a gzip of a gzip.
func TestCompressedFilesAreSearchedInside(t *testing.T) {
	s := scanner(t, map[string]string{"webhook_hmac": secret})
	payload := append(bytes.Repeat([]byte("070701 cpio padding "), 5000), "x="+secret+"\n"...)
	for name, blob := range map[string][]byte{
		"gzip":         compress(t, "gzip", payload),
		"xz":           compress(t, "xz", payload),
		"zstd":         compress(t, "zstd", payload),
		"gzip in gzip": compress(t, "gzip", compress(t, "gzip", payload)),
	} {
		t.Run(name, func(t *testing.T) {
			inside := false // zstd may also keep the text as a literal: found raw too
			for _, f := range findIn(t, s, blob) {
				inside = inside || (f.Secret == "webhook_hmac" && strings.HasPrefix(f.Where, "blob ("))
			}
			assert.True(t, inside, "the secret inside %s", name)
		})
	}
	t.Run("clean gzip has no finding", func(t *testing.T) {
		assert.Empty(t, findIn(t, s, compress(t, "gzip", bytes.Repeat([]byte("clean "), 1000))))
	})
}

// A stream that expands beyond the bound is a finding: what lies past it
// was not searched. A corrupt one is searched as far as it decodes.
func TestDecompressionIsBounded(t *testing.T) {
	s := scanner(t, map[string]string{"webhook_hmac": secret})
	s.MaxDecompressed = 1 << 20
	bomb := compress(t, "gzip", append(make([]byte, 4<<20), secret...))
	got := findIn(t, s, bomb)
	require.Len(t, got, 1)
	assert.Equal(t, Unsearched, got[0].Variant)
	assert.Contains(t, got[0].String(), "decompresses to more than 1048576 bytes")

	corrupt := compress(t, "gzip", append([]byte("x="+secret+"\n"), bytes.Repeat([]byte("y"), 100000)...))
	corrupt = corrupt[:len(corrupt)/2]
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken.gz"), corrupt, 0o644))
	found, st, err := s.DirProven(context.Background(), dir)
	require.NoError(t, err)
	require.Len(t, found, 1, "what decoded was searched")
	assert.Equal(t, "webhook_hmac", found[0].Secret)
	assert.Equal(t, 1, st.UndecodableN, "the corrupt stream is in the stats")
}

// A file the scan cannot read is a finding naming it, not a silent skip.
func TestAnUnreadableFileIsAFinding(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(bad, []byte("whatever"), 0o644))
	orig := openFile
	t.Cleanup(func() { openFile = orig })
	openFile = func(p string) (io.ReadCloser, error) {
		if p == bad {
			return nil, &os.PathError{Op: "open", Path: p, Err: errors.New("input/output error")}
		}
		return orig(p)
	}
	found, _, err := scanner(t, map[string]string{"webhook_hmac": secret}).DirProven(context.Background(), dir)
	require.NoError(t, err)
	require.Len(t, found, 1)
	assert.Equal(t, Unsearched, found[0].Variant)
	assert.Equal(t, bad, found[0].Where)
	assert.Contains(t, found[0].String(), "input/output error")
}

// Only what a non-root user can reach and read, minus the skipped trees,
// within the bound.
func TestReadableByOthersWalk(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to give files other owners")
	}
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	write := func(rel string, mode os.FileMode, uid, gid int) {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("v="+secret+"\n"), mode))
		require.NoError(t, os.Chmod(p, mode))
		require.NoError(t, os.Chown(p, uid, gid))
	}
	write("etc/world.env", 0o644, 0, 0)       // others read
	write("etc/group.env", 0o640, 0, 100)     // group users
	write("home/u/owner.env", 0o600, 1000, 0) // a user's own file
	write("etc/root-only.env", 0o600, 0, 0)   // root only
	write("etc/root-group.env", 0o640, 0, 0)  // group root
	write("private/world.env", 0o644, 0, 0)   // but its directory is root's
	write("skipped/world.env", 0o644, 0, 0)   // in a skipped tree
	require.NoError(t, os.Chmod(filepath.Join(dir, "private"), 0o700))

	s := scanner(t, map[string]string{"webhook_hmac": secret})
	s.Walk = Walk{ReadableByOthers: true, Skip: []string{filepath.Join(dir, "skipped")}}
	found, _, err := s.DirProven(context.Background(), dir)
	require.NoError(t, err)
	var where []string
	for _, f := range found {
		where = append(where, strings.TrimPrefix(f.Where, dir+"/"))
	}
	assert.ElementsMatch(t, []string{"etc/world.env", "etc/group.env", "home/u/owner.env"}, where)

	s.Walk = Walk{MaxBytes: 100} // the canary (49 bytes, first in the walk) and one more file
	found, _, err = s.DirProven(context.Background(), dir)
	require.NoError(t, err)
	assert.Contains(t, findingsText(found), "the scan's bound of 100 bytes was reached here")
}

func findingsText(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}
