package target

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// untar reads a tar stream into name → content (a symlink: "-> target",
// a directory: "/").
func untar(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		switch h.Typeflag {
		case tar.TypeDir:
			out[h.Name] = "/"
		case tar.TypeSymlink:
			out[h.Name] = "-> " + h.Linkname
		default:
			body, err := io.ReadAll(tr)
			require.NoError(t, err)
			out[h.Name] = string(body)
		}
	}
}

// The tree a machine evaluates is the committed one, byte for byte, whatever
// the tree's .gitattributes asks of git archive: export-subst rewrote a unit
// file and export-ignore dropped a module from what was evaluated (the
// audit's proof of concept).
func TestTheEvaluatedTreeIsWhatIsCommitted(t *testing.T) {
	const unit = "[Service]\nExecStart=/run/current-system/sw/bin/true # $Format:%H$\n"
	rp := committed(t, map[string]string{
		".gitattributes":       "modules/unit.service export-subst\nmodules/guard.nix export-ignore\n",
		"modules/unit.service": unit,
		"modules/guard.nix":    "{ assertions = [ { assertion = false; message = \"guard\"; } ]; }\n",
		"flake.nix":            "{ }\n",
	}, map[string]string{"modules/link.nix": "guard.nix"})

	base, _, err := rp.Trees(context.Background())
	require.NoError(t, err)
	got := untar(t, base)
	// As the machine reads it: tar -x, which wants the whole stream.
	x := exec.Command("tar", "-x", "-C", t.TempDir())
	x.Stdin = bytes.NewReader(base)
	out, err := x.CombinedOutput()
	require.NoError(t, err, "tar -x: %s", out)
	assert.Equal(t, unit, got["modules/unit.service"], "export-subst rewrote nothing")
	assert.Contains(t, got, "modules/guard.nix", "export-ignore dropped nothing")
	assert.Equal(t, "-> guard.nix", got["modules/link.nix"], "a symlink stays a symlink")
	assert.Equal(t, "/", got["modules/"])

	// What git archive would have given: the rewrite and the drop.
	archived, err := gitBytes(context.Background(), rp.Base, "archive", "--format=tar", rp.BaseCommit)
	require.NoError(t, err)
	arch := untar(t, archived)
	assert.NotEqual(t, unit, arch["modules/unit.service"], "git archive substitutes")
	assert.NotContains(t, arch, "modules/guard.nix", "git archive drops")
}

// A submodule is an empty directory, as git archive has it; a file's mode
// is the committed one.
func TestTheEvaluatedTreeKeepsSubmodulesAndModes(t *testing.T) {
	rp := baseRepo(t, map[string]string{"flake.nix": "{ }\n"}, map[string]string{"secrets": "0123456789abcdef0123456789abcdef01234567"})
	base, err := treeTar(context.Background(), rp.Base, rp.BaseCommit)
	require.NoError(t, err)
	tr := tar.NewReader(bytes.NewReader(base))
	modes := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		modes[h.Name] = h.Mode
	}
	assert.Equal(t, map[string]int64{"flake.nix": 0o644, "secrets/": 0o755}, modes)
}
