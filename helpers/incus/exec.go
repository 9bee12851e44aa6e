package incus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ExecResult is a finished command run through the Incus agent (or the
// container's init), with its recorded output.
type ExecResult struct {
	ExitCode int
	Stdout   []byte
	Stderr   []byte
}

type execPost struct {
	Command          []string          `json:"command"`
	Environment      map[string]string `json:"environment,omitempty"`
	WaitForWebsocket bool              `json:"wait-for-websocket"`
	RecordOutput     bool              `json:"record-output"`
	Interactive      bool              `json:"interactive"`
}

type execMetadata struct {
	Return int               `json:"return"`
	Output map[string]string `json:"output"` // "1" → stdout log path, "2" → stderr log path
}

// GuestPATH is the PATH every command run through Incus gets: the usual
// directories and NixOS's /run/current-system/sw/bin. incusd adds the latter
// for NixOS *containers* only (cmd/incusd/instance_exec.go, "Set default
// value for PATH"); a NixOS VM's agent gets the plain list, where none of
// NixOS's commands are.
const GuestPATH = "/run/current-system/sw/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// guestArgv runs argv through /bin/sh (the one interpreter path NixOS keeps):
// the agent looks argv[0] up in its own PATH, not the one the request
// carries, so the shell does the lookup with GuestPATH.
func guestArgv(argv []string) []string {
	return append([]string{"/bin/sh", "-c", `exec "$@"`, "sh"}, argv...)
}

// Exec runs a command in the instance without a websocket: Incus records its
// output to log files, which we fetch and then delete. The command gets no
// stdin, runs through /bin/sh with GuestPATH (unless env sets PATH).
// A non-zero exit code is not an error here; the caller judges it — that
// includes a command that is not found or not executable, which incusd
// reports as a failed operation ("Command not found", exit 127; "Command not
// executable", 126: internal/server/instance/drivers/driver_common.go).
func (c *Client) Exec(ctx context.Context, project, name string, command []string, env map[string]string) (*ExecResult, error) {
	what := fmt.Sprintf("exec %q in %s/%s", strings.Join(command, " "), project, name)
	withPath := map[string]string{"PATH": GuestPATH}
	for k, v := range env {
		withPath[k] = v
	}
	body := execPost{Command: guestArgv(command), Environment: withPath, RecordOutput: true}
	op, err := c.async(ctx, http.MethodPost, instancePath(name)+"/exec", projectQuery(project), body)
	var notRun *OperationError
	if errors.As(err, &notRun) && op != nil && notRunCode[notRun.Message] != 0 {
		return &ExecResult{ExitCode: notRunCode[notRun.Message], Stderr: []byte(notRun.Message + "\n")}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var md execMetadata
	if err := json.Unmarshal(op.Metadata, &md); err != nil {
		return nil, fmt.Errorf("%s: decode result: %w", what, err)
	}
	res := &ExecResult{ExitCode: md.Return}
	for fd, dst := range map[string]*[]byte{"1": &res.Stdout, "2": &res.Stderr} {
		p, ok := md.Output[fd]
		if !ok {
			continue
		}
		b, err := c.raw(ctx, http.MethodGet, p, projectQuery(project))
		if err != nil {
			return nil, fmt.Errorf("%s: read output %s: %w", what, fd, err)
		}
		*dst = b
		_, _ = c.raw(ctx, http.MethodDelete, p, projectQuery(project)) // best effort: don't leave logs behind
	}
	return res, nil
}

// notRunCode: incusd's failed-operation messages for a command that did not
// run, and the exit code a shell would give.
var notRunCode = map[string]int{"Command not found": 127, "Command not executable": 126}

// raw fetches a path whose body is not an Incus envelope (log files, files).
func (c *Client) raw(ctx context.Context, method, path string, q url.Values) ([]byte, error) {
	b, _, err := c.rawWithHeader(ctx, method, path, q)
	return b, err
}

func (c *Client) rawWithHeader(ctx context.Context, method, path string, q url.Values) ([]byte, http.Header, error) {
	req, err := c.request(ctx, method, path, q, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, &Error{Op: method + " " + path, Endpoint: c.Endpoint, Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, &Error{Op: method + " " + path, Endpoint: c.Endpoint, Err: err}
	}
	if resp.StatusCode >= 300 {
		var env envelope
		_ = json.Unmarshal(b, &env)
		return nil, nil, &Error{Op: method + " " + path, Endpoint: c.Endpoint, StatusCode: resp.StatusCode, Message: env.Error}
	}
	return b, resp.Header, nil
}

// FileSpec is a file (or, with Dir, a directory) to write into an instance.
type FileSpec struct {
	Path string
	Mode int // e.g. 0o600
	UID  int
	GID  int
	Data []byte
	Dir  bool // create a directory (X-Incus-type: directory); Data is ignored
}

// PushFile writes one file into the instance (POST /1.0/instances/<name>/files).
func (c *Client) PushFile(ctx context.Context, project, name string, f FileSpec) error {
	q := projectQuery(project)
	q.Set("path", f.Path)
	req, err := c.request(ctx, http.MethodPost, instancePath(name)+"/files", q, bytes.NewReader(f.Data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-Incus-type", map[bool]string{false: "file", true: "directory"}[f.Dir])
	req.Header.Set("X-Incus-write", "overwrite")
	req.Header.Set("X-Incus-mode", fmt.Sprintf("%04o", f.Mode))
	req.Header.Set("X-Incus-uid", strconv.Itoa(f.UID))
	req.Header.Set("X-Incus-gid", strconv.Itoa(f.GID))
	if _, err := c.send(req, nil); err != nil {
		return fmt.Errorf("push file %s to %s/%s: %w", f.Path, project, name, err)
	}
	return nil
}

// PullFile reads one file from the instance.
func (c *Client) PullFile(ctx context.Context, project, name, path string) ([]byte, error) {
	b, _, err := c.pullFile(ctx, project, name, path)
	return b, err
}

// FileInfo is what Incus says of a file in an instance (X-Incus-* headers).
type FileInfo struct {
	Type     string // file, directory, symlink
	Mode     int
	UID, GID int
}

// StatFile reads a file's type, mode and owner (GET …/files answers them as headers).
func (c *Client) StatFile(ctx context.Context, project, name, path string) (*FileInfo, error) {
	_, h, err := c.pullFile(ctx, project, name, path)
	if err != nil {
		return nil, err
	}
	fi := &FileInfo{Type: h.Get("X-Incus-type")}
	mode, err1 := strconv.ParseInt(h.Get("X-Incus-mode"), 8, 32)
	uid, err2 := strconv.Atoi(h.Get("X-Incus-uid"))
	gid, err3 := strconv.Atoi(h.Get("X-Incus-gid"))
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("stat %s in %s/%s: Incus's mode/uid/gid headers: %w", path, project, name, err)
	}
	fi.Mode, fi.UID, fi.GID = int(mode), uid, gid
	return fi, nil
}

func (c *Client) pullFile(ctx context.Context, project, name, path string) ([]byte, http.Header, error) {
	q := projectQuery(project)
	q.Set("path", path)
	b, h, err := c.rawWithHeader(ctx, http.MethodGet, instancePath(name)+"/files", q)
	if err != nil {
		return nil, nil, fmt.Errorf("pull file %s from %s/%s: %w", path, project, name, err)
	}
	return b, h, nil
}

// ReadLink reads a symlink in an instance through the file API: a GET, so
// nothing runs in the guest. incusd answers a symlink with X-Incus-type:
// symlink and its target as the body (cmd/incusd/instance_file.go,
// fileSFTPGet; a relative target comes back made absolute).
func (c *Client) ReadLink(ctx context.Context, project, name, path string) (string, error) {
	b, h, err := c.pullFile(ctx, project, name, path)
	if err != nil {
		return "", err
	}
	if t := h.Get("X-Incus-type"); t != "symlink" {
		return "", fmt.Errorf("%s in %s/%s is a %s, not a symlink", path, project, name, t)
	}
	return strings.TrimSpace(string(b)), nil
}

// DeleteFile removes one file from the instance; a file that is not there is not an error.
func (c *Client) DeleteFile(ctx context.Context, project, name, path string) error {
	q := projectQuery(project)
	q.Set("path", path)
	if _, err := c.do(ctx, http.MethodDelete, instancePath(name)+"/files", q, nil, nil); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete file %s in %s/%s: %w", path, project, name, err)
	}
	return nil
}
