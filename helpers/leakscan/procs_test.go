package leakscan

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A secret in a process's arguments is readable by every user (ps): it is
// found, naming the process; the scan proves itself with a canary process
// of its own, and fails when it cannot find it.
func TestASecretInAProcesssArgumentsIsFound(t *testing.T) {
	secret := "proc-secret-" + fmt.Sprint(os.Getpid()) + "-0123456789"
	p := exec.Command("/bin/sh", "-c", "read _", "cc-ci-proxy", "--token="+secret)
	in, err := p.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, p.Start())
	defer func() { _ = in.Close(); _ = p.Wait() }()

	s := New(Needles(map[string]string{"proxy-token": secret}, 0, nil))
	found, st, err := s.ProcessesProven(context.Background(), "/proc")
	require.NoError(t, err)
	assert.True(t, st.Canary)
	require.Len(t, found, 1, "%v", found)
	assert.Equal(t, "proxy-token", found[0].Secret)
	assert.Contains(t, found[0].Where, fmt.Sprintf("/proc/%d/cmdline (process %d", p.Process.Pid, p.Process.Pid))
	assert.Contains(t, found[0].Where, "readable by every user")

	// A /proc that is not the processes' (the canary is not in it): the scan
	// cannot be trusted, and says so.
	fake := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(fake, "1"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(fake, "1", "cmdline"), []byte("init\x00"), 0o444))
	_, _, err = s.ProcessesProven(context.Background(), fake)
	assert.ErrorContains(t, err, "the scan of the processes cannot be trusted")
}

func TestHidepidIsReadFromTheProcMount(t *testing.T) {
	dir := t.TempDir()
	for opts, want := range map[string]bool{"rw": false, "rw,hidepid=2": true, "rw,hidepid=invisible,gid=4": true, "rw,hidepid=0": false} {
		mi := "22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n23 1 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc " + opts + "\n"
		p := filepath.Join(dir, strings.ReplaceAll(opts, ",", "_"))
		require.NoError(t, os.WriteFile(p, []byte(mi), 0o644))
		assert.Equal(t, want, hidepid(p), opts)
	}
}
