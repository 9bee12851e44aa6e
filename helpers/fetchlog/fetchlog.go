// Package fetchlog is a git server's record of what it was asked for: one
// JSON line per request for a repository — when, from which address, over
// which protocol, which repository — a forge's access log reduced to what
// C3 judges: that the machine fetched nothing but the two repos, told apart
// by repository, not by host and port (a third repo on the same server is
// a third repo). The lab's git server writes it; a real forge's access log
// can be converted to it (docs/configuration.md, CCCI_FETCH_LOG).
package fetchlog

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Entry is one request for a repository.
type Entry struct {
	Time     time.Time `json:"time"`
	Remote   string    `json:"remote"`   // the client's address (no port)
	Protocol string    `json:"protocol"` // http, ssh
	Repo     string    `json:"repo"`     // its path on the server, no leading slash: "good/cc-ci.git"
	Status   int       `json:"status,omitempty"`
}

// Writer appends entries to a log file.
type Writer struct {
	mu sync.Mutex
	f  *os.File
}

// Open opens (or creates) the log for appending; a symlink is refused.
func Open(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("fetch log: %w", err)
	}
	return &Writer{f: f}, nil
}

// Record appends one entry; a nil Writer records nothing.
func (w *Writer) Record(e Entry) error {
	if w == nil {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err = w.f.Write(append(b, '\n'))
	return err
}

// RemoteOf is the address part of a request's remote address (host:port),
// without an IPv6 zone (Incus reports a link-local address without one).
func RemoteOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		addr = h
	}
	h, _, _ := strings.Cut(addr, "%")
	return h
}

// maxLine bounds one entry; MaxLog the whole log read.
const (
	maxLine = 64 << 10
	MaxLog  = 256 << 20
)

// Read returns the entries of the log at path from since on. It follows no
// symlink, reads at most MaxLog bytes, and refuses a line that is not an
// entry, naming it.
func Read(path string, since time.Time) ([]Entry, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("fetch log: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, MaxLog+1))
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	var out []Entry
	var read int64
	for n := 1; sc.Scan(); n++ {
		read += int64(len(sc.Bytes())) + 1
		if read > MaxLog {
			return nil, fmt.Errorf("fetch log %s: larger than %d bytes", path, MaxLog)
		}
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Time.IsZero() || e.Remote == "" || e.Repo == "" {
			return nil, fmt.Errorf("fetch log %s line %d: not an entry (want time, remote, repo)", path, n)
		}
		if !e.Time.Before(since) {
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("fetch log %s: a line longer than %d bytes", path, maxLine)
		}
		return nil, fmt.Errorf("fetch log %s: %w", path, err)
	}
	return out, nil
}

// RepoOf is the repository a git URL names, as the log spells it: its path
// without the leading slash (https://host/a/b.git, ssh://git@host/a/b.git
// and git@host:a/b.git all name "a/b.git").
func RepoOf(raw string) (string, error) {
	if !strings.Contains(raw, "://") {
		if host, p, ok := strings.Cut(raw, ":"); ok && strings.Contains(host, "@") {
			return strings.Trim(p, "/"), nil
		}
		return "", fmt.Errorf("%q is not a git URL", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q is not a git URL: %w", raw, err)
	}
	return strings.Trim(u.Path, "/"), nil
}
