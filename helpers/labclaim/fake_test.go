package labclaim_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeIncus answers, on a unix socket, the few GETs of Incus's REST API
// (doc/rest-api.yaml) that the lab tooling reads, holds a server config that
// PATCH /1.0 merges into (as Incus does), and records every request so a
// test can assert that nothing was changed.
type fakeIncus struct {
	Socket string

	mu        sync.Mutex
	config    map[string]any
	instances []map[string]any
	projects  []string
	pools     []string
	networks  []map[string]any
	certs     []map[string]any
	requests  []string // "METHOD path"
}

func newFakeIncus(t *testing.T) *fakeIncus {
	t.Helper()
	f := &fakeIncus{Socket: filepath.Join(t.TempDir(), "unix.socket"), config: map[string]any{},
		projects: []string{"default"}, networks: []map[string]any{{"name": "lo", "managed": false}}}
	ln, err := net.Listen("unix", f.Socket)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return f
}

// all lists every request so far.
func (f *fakeIncus) all() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// changes lists every request that is not a read.
func (f *fakeIncus) changes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		if !strings.HasPrefix(r, "GET ") {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeIncus) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	sync := func(md any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"type": "sync", "status": "Success", "status_code": 200, "metadata": md})
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/1.0":
		sync(map[string]any{"auth": "trusted", "api_version": "1.0", "config": f.config,
			"environment": map[string]any{"server_name": "fake", "server_version": "6.0.4"}})
	case r.Method == http.MethodPatch && r.URL.Path == "/1.0":
		var body struct{ Config map[string]any }
		_ = json.NewDecoder(r.Body).Decode(&body)
		for k, v := range body.Config {
			f.config[k] = v
		}
		sync(nil)
	case r.Method == http.MethodGet && r.URL.Path == "/1.0/instances":
		sync(f.instances)
	case r.Method == http.MethodGet && r.URL.Path == "/1.0/projects":
		var ps []map[string]any
		for _, p := range f.projects {
			ps = append(ps, map[string]any{"name": p})
		}
		sync(ps)
	case r.Method == http.MethodGet && r.URL.Path == "/1.0/storage-pools":
		var ps []map[string]any
		for _, p := range f.pools {
			ps = append(ps, map[string]any{"name": p, "driver": "btrfs"})
		}
		sync(ps)
	case r.Method == http.MethodGet && r.URL.Path == "/1.0/networks":
		sync(f.networks)
	case r.Method == http.MethodGet && r.URL.Path == "/1.0/certificates":
		sync(f.certs)
	default:
		w.WriteHeader(http.StatusNotImplemented)
		_ = json.NewEncoder(w).Encode(map[string]any{"type": "error", "error": "not in the fake", "error_code": 501})
	}
}

// aRealHost is what a production Incus looks like to the lab: an address for
// its remote clients, projects, pools and the production reference instance,
// with no lab label.
func aRealHost(t *testing.T) *fakeIncus {
	f := newFakeIncus(t)
	f.config["core.https_address"] = "[::]:8443"
	f.projects = append(f.projects, "terraform-ci", "lichen")
	f.pools = []string{"default"}
	f.networks = append(f.networks, map[string]any{"name": "incusbr0", "managed": true})
	f.instances = []map[string]any{
		{"name": "cc-nix-test", "project": "terraform-ci", "status": "Running", "config": map[string]any{"volatile.uuid": "8d1c0a8e-0000-4000-8000-000000000001"}},
		{"name": "lichen-staging", "project": "lichen", "status": "Running", "config": map[string]any{}},
	}
	return f
}
