package cijob

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The plan's CI job runs on a NixOS runner, where /usr/bin/env is the only
// interpreter path guaranteed (no /bin/bash). Every script this repository
// runs on the runner names its interpreter through env, and the Makefile
// takes its shell from PATH. (fixtures/target's scripts run on the target,
// inside the lab's own image, and are not the runner's.)
func TestTheRunnersScriptsAndMakefileNeedOnlyUsrBinEnv(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	files, err := exec.Command("git", "-C", root, "ls-files").Output()
	require.NoError(t, err)
	for _, f := range strings.Fields(string(files)) {
		if strings.HasPrefix(f, "fixtures/target/") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil || !bytes.HasPrefix(b, []byte("#!")) {
			continue
		}
		line, _, _ := bytes.Cut(b, []byte("\n"))
		assert.True(t, strings.HasPrefix(string(line), "#!/usr/bin/env "), "%s: interpreter %q: use #!/usr/bin/env", f, line)
	}

	// make runs its recipes with the bash found on PATH: a recording bash
	// first on PATH must be the one make runs.
	realBash, err := exec.LookPath("bash")
	require.NoError(t, err)
	bin, mark := t.TempDir(), filepath.Join(t.TempDir(), "bash-ran")
	wrapper := "#!" + realBash + "\necho \"$@\" >>" + mark + "\nexec " + realBash + " \"$@\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(bin, "bash"), []byte(wrapper), 0o755))
	cmd := exec.Command("make", "-s", "help")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "make help: %s", out)
	f, err := os.Open(mark)
	require.NoError(t, err, "make did not run its recipe with the bash on PATH (SHELL must not be an absolute /bin/bash)")
	defer f.Close()
	require.True(t, bufio.NewScanner(f).Scan(), "the PATH bash was never given a recipe")
}
