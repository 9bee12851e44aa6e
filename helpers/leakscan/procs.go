package leakscan

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cc-ci/acceptance/helpers/localfile"
)

// ProcessesProven searches what every user can read of every process: its
// arguments, /proc/<pid>/cmdline, mode 0444 (proc(5)), which ps shows to
// anyone. A finding names the process (its pid, name and uid). The scan is
// proven as the file scans are: a process of its own holds a canary in its
// arguments, and the scan fails unless it is found there.
//
// Not searched: /proc/<pid>/environ, which proc(5) gives to the process's
// own user and root only (mode 0400 and a ptrace access check) — the reach
// of the EnvironmentFile a service reads its secret from, which the file
// scan judges. When /proc is mounted with hidepid (1, 2, noaccess,
// invisible), another user cannot open a process's directory at all: then
// only processes of users other than root are searched (their arguments
// are readable by their own user, who is not root).
func (s *Scanner) ProcessesProven(ctx context.Context, proc string) ([]Finding, Stats, error) {
	start := time.Now()
	c := canaryNeedle()
	holder := exec.CommandContext(ctx, "/bin/sh", "-c", "read _", string(c.Bytes)) // $0 is the canary
	stdin, err := holder.StdinPipe()
	if err != nil {
		return nil, Stats{}, err
	}
	if err := holder.Start(); err != nil {
		return nil, Stats{}, fmt.Errorf("leakscan: start the canary's process: %w", err)
	}
	defer func() { _ = stdin.Close(); _ = holder.Wait() }()
	canaryAt := filepath.Join(proc, strconv.Itoa(holder.Process.Pid), "cmdline")

	sc := New(append(append([]Needle(nil), s.needles...), c))
	sc.Workers, sc.Chunk, sc.MaxDecompressed = s.Workers, s.Chunk, s.MaxDecompressed
	hidden := hidepid(filepath.Join(proc, "self", "mountinfo"))
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("leakscan: list %s: %w", proc, err)
	}
	var out []Finding
	var st Stats
	for _, e := range entries {
		if ctx.Err() != nil {
			return nil, st, ctx.Err()
		}
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		dir := filepath.Join(proc, e.Name())
		info, err := os.Stat(dir)
		if err != nil {
			continue // gone since it was listed
		}
		uid := uint32(0)
		if sys, ok := info.Sys().(*syscall.Stat_t); ok {
			uid = sys.Uid
		}
		if hidden && uid == 0 && pid != holder.Process.Pid {
			continue
		}
		p := filepath.Join(dir, "cmdline")
		found, n, err := sc.boundedFile(p, maxCmdline)
		st.Files, st.Bytes = st.Files+1, st.Bytes+n
		if err != nil {
			continue // exited while it was read
		}
		name := strings.TrimSpace(string(readSmallN(filepath.Join(dir, "comm"), 64)))
		for _, f := range found {
			if f.Secret == canaryName {
				st.Canary = st.Canary || p == canaryAt
				continue
			}
			f.Where = fmt.Sprintf("%s (process %d %q, uid %d: its arguments, readable by every user)", p, pid, name, uid)
			out = append(out, f)
		}
	}
	st.Duration = time.Since(start)
	if !st.Canary {
		return out, st, fmt.Errorf("leakscan: the canary in the arguments of process %d was not found in %s: the scan of the processes cannot be trusted", holder.Process.Pid, canaryAt)
	}
	sortFindings(out)
	return out, st, nil
}

// maxCmdline bounds what is read of one process's arguments (Linux's
// ARG_MAX is 2 MiB by default; a longer one is read that far).
const maxCmdline = 4 << 20

// boundedFile scans at most limit bytes of the file at p.
func (s *Scanner) boundedFile(p string, limit int64) ([]Finding, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	cr := &countingReader{r: io.LimitReader(f, limit)}
	found, err := s.Reader(p, cr)
	return found, cr.n, err
}

// hidepid says whether the /proc that mountinfo describes hides other
// users' processes (proc(5): hidepid=1|2, noaccess|invisible).
func hidepid(mountinfo string) bool {
	for _, line := range strings.Split(string(readSmallN(mountinfo, 1<<20)), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != "/proc" {
			continue
		}
		for _, opt := range strings.Split(line[strings.LastIndex(line, " ")+1:], ",") {
			switch opt {
			case "hidepid=1", "hidepid=2", "hidepid=noaccess", "hidepid=invisible":
				return true
			}
		}
	}
	return false
}

func readSmallN(p string, n int64) []byte {
	b, err := localfile.Read(p, n)
	if err != nil {
		return nil
	}
	return b
}
