package leakscan

// Who can read a file: a secret copied where a non-root user can read it
// (a unit's environment file, a config under /etc or /var) has leaked,
// wherever it is. Judged from the mode bits and owners, as the kernel does
// for a user who is neither root nor in group 0 (generic_permission in
// fs/namei.c): a file is readable by some such user when others may read
// it, or a non-root group or owner may — and every directory above it is
// searchable the same way. ACLs and capabilities are not modelled.

import (
	"io/fs"
	"syscall"
)

// DefaultMaxReadable bounds a scan of what others can read on a machine:
// a cc-ci host outside its store holds far less; beyond it, the scan says
// where it stopped (a finding).
const DefaultMaxReadable = 8 << 30

// Walk decides what Dir reads. The zero value reads every regular file.
type Walk struct {
	ReadableByOthers bool     // only files a non-root user can reach and read
	Skip             []string // directories not entered (absolute paths)
	MaxBytes         int64    // stop reading after this many bytes (0: no bound); the rest is a finding
	// Processes: also every process's arguments, which every user can read
	// (ProcessesProven).
	Processes bool
}

// openToOthers: the permission bits (read 4, search 1) granted to some user
// who is not root.
func openToOthers(info fs.FileInfo, bit fs.FileMode) bool {
	m := info.Mode().Perm()
	if m&bit != 0 { // others
		return true
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return true // cannot tell: assume it can be read, so it is searched
	}
	return (st.Gid != 0 && m&(bit<<3) != 0) || (st.Uid != 0 && m&(bit<<6) != 0)
}

func (w Walk) skips(path string) bool {
	for _, s := range w.Skip {
		if path == s {
			return true
		}
	}
	return false
}
