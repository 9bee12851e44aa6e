package incus

import (
	"bytes"
	"context"
	"encoding/json"
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

// Exec runs a command in the instance without a websocket: Incus records its
// output to log files, which we fetch and then delete. The command gets no stdin.
// A non-zero exit code is not an error here; the caller judges it.
func (c *Client) Exec(ctx context.Context, project, name string, command []string, env map[string]string) (*ExecResult, error) {
	body := execPost{Command: command, Environment: env, RecordOutput: true}
	op, err := c.async(ctx, http.MethodPost, instancePath(name)+"/exec", projectQuery(project), body)
	if err != nil {
		return nil, fmt.Errorf("exec %q in %s/%s: %w", strings.Join(command, " "), project, name, err)
	}
	var md execMetadata
	if err := json.Unmarshal(op.Metadata, &md); err != nil {
		return nil, fmt.Errorf("exec %q in %s/%s: decode result: %w", strings.Join(command, " "), project, name, err)
	}
	res := &ExecResult{ExitCode: md.Return}
	for fd, dst := range map[string]*[]byte{"1": &res.Stdout, "2": &res.Stderr} {
		p, ok := md.Output[fd]
		if !ok {
			continue
		}
		b, err := c.raw(ctx, http.MethodGet, p, projectQuery(project))
		if err != nil {
			return nil, fmt.Errorf("exec %q in %s/%s: read output %s: %w", strings.Join(command, " "), project, name, fd, err)
		}
		*dst = b
		_, _ = c.raw(ctx, http.MethodDelete, p, projectQuery(project)) // best effort: don't leave logs behind
	}
	return res, nil
}

// raw fetches a path whose body is not an Incus envelope (log files, files).
func (c *Client) raw(ctx context.Context, method, path string, q url.Values) ([]byte, error) {
	req, err := c.request(ctx, method, path, q, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &Error{Op: method + " " + path, Endpoint: c.Endpoint, Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, &Error{Op: method + " " + path, Endpoint: c.Endpoint, Err: err}
	}
	if resp.StatusCode >= 300 {
		var env envelope
		_ = json.Unmarshal(b, &env)
		return nil, &Error{Op: method + " " + path, Endpoint: c.Endpoint, StatusCode: resp.StatusCode, Message: env.Error}
	}
	return b, nil
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
	q := projectQuery(project)
	q.Set("path", path)
	b, err := c.raw(ctx, http.MethodGet, instancePath(name)+"/files", q)
	if err != nil {
		return nil, fmt.Errorf("pull file %s from %s/%s: %w", path, project, name, err)
	}
	return b, nil
}
