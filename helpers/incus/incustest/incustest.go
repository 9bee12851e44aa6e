// Package incustest is a small fake of the Incus REST API, in the spirit of
// net/http/httptest: enough of the instance lifecycle (create, start, state,
// exec with recorded output, file push, stop, delete, operations) for the
// harness's machine code to run against it unchanged, with a container or a
// virtual machine behind it.
//
// Each answer follows Incus's API reference (doc/rest-api.yaml in the Incus
// sources; the path is named at each handler). What differs for a
// virtual-machine is modelled from the Incus documentation and incusd's
// QEMU driver: the instance is "Running" as soon as QEMU runs, but exec and
// file calls go through the incus-agent inside the guest and fail with
// "VM agent isn't currently running" until it answers; the guest's own
// interface names (enp5s0) are reported only by the agent; an image that
// needs secure boot off (NixOS) never boots — Running, no agent — unless
// security.secureboot=false.
//
// The guest is simulated: a file map, an ed25519 SSH host key at
// /etc/ssh/ssh_host_ed25519_key.pub, and one in-process SSH server that
// accepts the keys in /root/.ssh/authorized_keys (or, if the image honours
// it, user.ssh_authorized_keys) and answers every command with exit 0.
package incustest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/remote"
)

// Image is what the fake knows of an image alias.
type Image struct {
	// HonoursSSHKeyTemplate: the image's templates write user.ssh_authorized_keys
	// into root's authorized_keys (the lab's image does; the real one may not).
	HonoursSSHKeyTemplate bool
	// NeedsSecureBootOff: a VM from it boots only with security.secureboot=false.
	NeedsSecureBootOff bool
	// RunsCloudInit: the image runs cloud-init, which installs the keys of
	// cloud-init.user-data's users (only root's are simulated).
	RunsCloudInit bool
}

// Server is the fake Incus. Set its fields before the first request.
type Server struct {
	*httptest.Server
	Images map[string]Image // by alias; an unknown alias fails the create
	// AgentDelay is how many state/exec/file calls a started VM answers
	// before its agent is up; AgentNever keeps it down for good.
	AgentDelay int
	AgentNever bool
	// AddressBeforeAgent: a VM's address is reported before its agent
	// answers (incusd can read it from the managed bridge's DHCP leases).
	AddressBeforeAgent bool

	Socket string // the API's unix socket

	mu          sync.Mutex
	instances   map[string]*instance // project/name
	ops         map[string]*op
	logs        map[string][]byte
	seq         int
	sshAddr     *net.TCPAddr
	sshListener net.Listener
	requests    []string
}

type instance struct {
	Name, Project, Type, Status string
	Config                      map[string]string
	CreatedAt                   time.Time
	files                       map[string]file
	hostKey                     ssh.Signer
	calls                       int // agent-gated calls since start
}

type file struct {
	Data     []byte
	Mode     int
	UID, GID int
}

type op struct {
	ID, Description, Status, Err string
	StatusCode                   int
	Metadata                     any
}

// New starts the fake on a unix socket in dir (the harness reaches the lab's
// Incus the same way: incus.Config{Socket: s.Socket}) and its guest SSH server.
func New(dir string) (*Server, error) {
	s := &Server{Images: map[string]Image{}, instances: map[string]*instance{}, ops: map[string]*op{}, logs: map[string][]byte{},
		Socket: filepath.Join(dir, "incus.socket")}
	l, err := net.Listen("unix", s.Socket)
	if err != nil {
		return nil, fmt.Errorf("incustest: %w", err)
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Server.Listener = l
	s.Server.Start()
	if err := s.startSSH(); err != nil {
		s.Server.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the API and the SSH server.
func (s *Server) Close() {
	s.Server.Close()
	s.sshListener.Close()
}

// SSHPort is the port the guests' SSH server listens on (address 127.0.0.1).
func (s *Server) SSHPort() int { return s.sshAddr.Port }

// Requests lists "METHOD path" of every request so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// Instance returns a copy of an instance's config and status, and whether it exists.
func (s *Server) Instance(project, name string) (status string, cfg map[string]string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[project+"/"+name]
	if !ok {
		return "", nil, false
	}
	return in.Status, maps.Clone(in.Config), true
}

// File returns a file of an instance's guest.
func (s *Server) File(project, name, path string) (data []byte, mode int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, found := s.instances[project+"/"+name]
	if !found {
		return nil, 0, false
	}
	f, ok := in.files[path]
	return f.Data, f.Mode, ok
}

// reply writes a sync response (rest-api.yaml: definitions ResponseRaw).
func reply(w http.ResponseWriter, md any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "sync", "status": "Success", "status_code": 200, "metadata": md})
}

// fail writes an error response, as incusd's response.SmartError does: a
// not-found is 404, an error it has no class for is 500 with its text.
func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "error", "error": msg, "error_code": code})
}

// async records a finished operation and answers 202 with its URL (rest-api.yaml: Operation).
func (s *Server) async(w http.ResponseWriter, desc string, err error, md any) {
	s.seq++
	o := &op{ID: fmt.Sprintf("op-%d", s.seq), Description: desc, Status: "Success", StatusCode: 200, Metadata: md}
	if err != nil {
		o.Status, o.StatusCode, o.Err = "Failure", 400, err.Error()
	}
	s.ops[o.ID] = o
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "async", "status": "Operation created", "status_code": 100,
		"operation": "/1.0/operations/" + o.ID, "metadata": map[string]any{"id": o.ID}})
}

const agentOffline = "VM agent isn't currently running"

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	project := r.URL.Query().Get("project")
	if project == "" {
		project = "default"
	}
	path := strings.TrimPrefix(r.URL.Path, "/1.0")
	switch {
	case path == "" && r.Method == http.MethodGet: // GET /1.0
		reply(w, map[string]any{"auth": "trusted", "api_version": "1.0", "api_status": "stable",
			"environment": map[string]any{"server_name": "incustest", "driver": "lxc | qemu"}})
	case strings.HasPrefix(path, "/operations/"): // GET /1.0/operations/{id}/wait
		id := strings.TrimSuffix(strings.TrimPrefix(path, "/operations/"), "/wait")
		o, ok := s.ops[id]
		if !ok {
			fail(w, 404, "Operation not found")
			return
		}
		reply(w, map[string]any{"id": o.ID, "description": o.Description, "status": o.Status,
			"status_code": o.StatusCode, "err": o.Err, "metadata": o.Metadata})
	case path == "/instances" && r.Method == http.MethodGet: // GET /1.0/instances?recursion=1
		var out []map[string]any
		for _, in := range s.instances {
			if r.URL.Query().Get("all-projects") == "true" || in.Project == project {
				out = append(out, in.api())
			}
		}
		reply(w, out)
	case path == "/instances" && r.Method == http.MethodPost: // POST /1.0/instances
		s.create(w, r, project)
	case strings.HasPrefix(path, "/instances/"):
		s.instanceCall(w, r, project, strings.TrimPrefix(path, "/instances/"))
	default:
		fail(w, 404, "not found")
	}
}

func (in *instance) api() map[string]any {
	return map[string]any{"name": in.Name, "project": in.Project, "type": in.Type, "status": in.Status,
		"created_at": in.CreatedAt, "config": in.Config, "expanded_config": in.Config}
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, project string) {
	var req struct {
		Name   string                 `json:"name"`
		Type   string                 `json:"type"`
		Config map[string]string      `json:"config"`
		Source struct{ Alias string } `json:"source"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		fail(w, 400, "bad request: "+err.Error())
		return
	}
	if _, exists := s.instances[project+"/"+req.Name]; exists {
		s.async(w, "Creating instance", fmt.Errorf("Instance %q already exists", req.Name), nil)
		return
	}
	if _, ok := s.Images[req.Source.Alias]; !ok {
		s.async(w, "Creating instance", fmt.Errorf("Failed getting image: Image %q not found", req.Source.Alias), nil)
		return
	}
	if req.Type == "" {
		req.Type = "container"
	}
	signer, _, _ := remote.NewKey()
	cfg := map[string]string{"volatile.uuid": fmt.Sprintf("uuid-%d-%d", time.Now().UnixNano(), s.seq),
		"volatile.eth0.hwaddr": "10:66:6a:00:00:01", "image.alias": req.Source.Alias}
	for k, v := range req.Config {
		cfg[k] = v
	}
	s.instances[project+"/"+req.Name] = &instance{Name: req.Name, Project: project, Type: req.Type, Status: "Stopped",
		Config: cfg, CreatedAt: time.Now().UTC(), hostKey: signer, files: map[string]file{}}
	s.async(w, "Creating instance", nil, nil)
}

// agentUp: a container always (its init is reached directly); a VM once its
// agent answers. Each call counts towards AgentDelay.
func (s *Server) agentUp(in *instance) bool {
	if in.Type != "virtual-machine" {
		return true
	}
	in.calls++
	img := s.Images[in.Config["image.alias"]]
	if s.AgentNever || (img.NeedsSecureBootOff && in.Config["security.secureboot"] != "false") {
		return false
	}
	return in.calls > s.AgentDelay
}

// guestAnswers is whether an exec or file call reaches the guest; if not,
// it has answered as Incus does (not running; a VM without its agent).
func (s *Server) guestAnswers(w http.ResponseWriter, in *instance) bool {
	switch {
	case in.Status != "Running":
		fail(w, 400, "Instance is not running")
	case !s.agentUp(in):
		fail(w, 500, agentOffline)
	default:
		return true
	}
	return false
}

func (s *Server) instanceCall(w http.ResponseWriter, r *http.Request, project, rest string) {
	name, sub, _ := strings.Cut(rest, "/")
	in, ok := s.instances[project+"/"+name]
	if !ok {
		fail(w, 404, "Instance not found")
		return
	}
	running := in.Status == "Running"
	switch {
	case sub == "" && r.Method == http.MethodGet: // GET /1.0/instances/{name}
		reply(w, in.api())
	case sub == "" && r.Method == http.MethodDelete: // DELETE /1.0/instances/{name}
		if running {
			s.async(w, "Deleting instance", fmt.Errorf("Instance is running"), nil)
			return
		}
		delete(s.instances, project+"/"+name)
		s.async(w, "Deleting instance", nil, nil)
	case sub == "state" && r.Method == http.MethodPut: // PUT /1.0/instances/{name}/state
		var req struct{ Action string }
		_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
		switch req.Action {
		case "start":
			in.Status, in.calls = "Running", 0
			s.boot(in)
		case "stop":
			if !running {
				s.async(w, "Stopping instance", fmt.Errorf("The instance is already stopped"), nil)
				return
			}
			in.Status = "Stopped"
		default:
			s.async(w, "Changing state", fmt.Errorf("unknown action %q", req.Action), nil)
			return
		}
		s.async(w, "Changing state", nil, nil)
	case sub == "state" && r.Method == http.MethodGet: // GET /1.0/instances/{name}/state
		reply(w, map[string]any{"status": in.Status, "network": s.network(in)})
	case sub == "exec" && r.Method == http.MethodPost: // POST /1.0/instances/{name}/exec (record-output)
		if !s.guestAnswers(w, in) {
			return
		}
		var req struct{ Command []string }
		_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
		code, stdout, stderr := in.run(req.Command)
		base := fmt.Sprintf("/1.0/instances/%s/logs/exec-output/exec_%d", name, s.seq)
		s.logs[base+".stdout"], s.logs[base+".stderr"] = stdout, stderr
		s.async(w, "Executing command", nil, map[string]any{"return": code,
			"output": map[string]string{"1": base + ".stdout", "2": base + ".stderr"}})
	case strings.HasPrefix(sub, "logs/"): // GET/DELETE /1.0/instances/{name}/logs/exec-output/{file}
		b, ok := s.logs[r.URL.Path]
		if !ok {
			fail(w, 404, "not found")
			return
		}
		if r.Method == http.MethodDelete {
			delete(s.logs, r.URL.Path)
			reply(w, nil)
			return
		}
		_, _ = w.Write(b)
	case sub == "files" && r.Method == http.MethodPost: // POST /1.0/instances/{name}/files
		if !s.guestAnswers(w, in) {
			return
		}
		mode, _ := strconv.ParseInt(r.Header.Get("X-Incus-mode"), 8, 32)
		uid, _ := strconv.Atoi(r.Header.Get("X-Incus-uid"))
		gid, _ := strconv.Atoi(r.Header.Get("X-Incus-gid"))
		p := r.URL.Query().Get("path")
		if r.Header.Get("X-Incus-type") == "directory" {
			in.files[p+"/"] = file{Mode: int(mode), UID: uid, GID: gid}
			reply(w, nil)
			return
		}
		dir := p[:strings.LastIndex(p, "/")]
		if _, ok := in.files[dir+"/"]; !ok && dir != "" {
			fail(w, 404, "Failed to create file: parent directory "+dir+" does not exist")
			return
		}
		data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		in.files[p] = file{Data: data, Mode: int(mode), UID: uid, GID: gid}
		reply(w, nil)
	default:
		fail(w, 404, "not found")
	}
}

// boot is what the guest has once started: its host key, the directories a
// distribution ships, and — through the image's templates — the key in
// user.ssh_authorized_keys, if the image honours it.
func (s *Server) boot(in *instance) {
	in.files["/etc/ssh/ssh_host_ed25519_key.pub"] = file{Data: ssh.MarshalAuthorizedKey(in.hostKey.PublicKey()), Mode: 0o644}
	for _, d := range []string{"/", "/etc/", "/etc/ssh/", "/root/"} {
		in.files[d] = file{Mode: 0o755}
	}
	img := s.Images[in.Config["image.alias"]]
	keys := ""
	if k := in.Config["user.ssh_authorized_keys"]; k != "" && img.HonoursSSHKeyTemplate {
		keys = k
	}
	if ud := in.Config["cloud-init.user-data"]; ud != "" && img.RunsCloudInit {
		var doc struct {
			Users []struct {
				Name string
				Keys []string `yaml:"ssh_authorized_keys"`
			}
		}
		if yaml.Unmarshal([]byte(ud), &doc) == nil {
			for _, u := range doc.Users {
				if u.Name == "root" {
					keys += strings.Join(u.Keys, "\n") + "\n"
				}
			}
		}
	}
	if keys != "" {
		in.files["/root/.ssh/"] = file{Mode: 0o700}
		in.files["/root/.ssh/authorized_keys"] = file{Data: []byte(keys), Mode: 0o600}
	}
}

// network is the state's network: a container's interfaces as the kernel
// names them (eth0); a VM's from its agent (enp5s0), or — before the agent,
// if AddressBeforeAgent — the host's view of its NIC, named after the device.
func (s *Server) network(in *instance) map[string]any {
	if in.Status != "Running" {
		return map[string]any{}
	}
	iface := func(addr string) map[string]any {
		return map[string]any{"hwaddr": in.Config["volatile.eth0.hwaddr"], "state": "up", "type": "broadcast",
			"addresses": []map[string]string{{"family": "inet", "address": addr, "netmask": "8", "scope": "global"},
				{"family": "inet6", "address": "fe80::1", "netmask": "64", "scope": "link"}}}
	}
	lo := map[string]any{"addresses": []map[string]string{{"family": "inet", "address": "127.0.0.1", "netmask": "8", "scope": "local"}}}
	switch {
	case in.Type != "virtual-machine":
		return map[string]any{"lo": lo, "eth0": iface("127.0.0.1")}
	case s.agentUp(in):
		// The guest also runs Docker (cc-ci does): a second global address.
		return map[string]any{"lo": lo, "enp5s0": iface("127.0.0.1"),
			"docker0": map[string]any{"hwaddr": "02:42:00:00:00:01", "addresses": []map[string]string{{"family": "inet", "address": "172.17.0.1", "scope": "global"}}}}
	case s.AddressBeforeAgent:
		return map[string]any{"eth0": iface("127.0.0.1")}
	}
	return map[string]any{}
}

// run is the guest's answer to an exec: `cat FILE` reads the file map;
// anything else is not simulated (exit 127), so a test notices.
func (in *instance) run(argv []string) (int, []byte, []byte) {
	if len(argv) == 2 && argv[0] == "cat" {
		if f, ok := in.files[argv[1]]; ok {
			return 0, f.Data, nil
		}
		return 1, nil, []byte("cat: " + argv[1] + ": No such file or directory\n")
	}
	return 127, nil, []byte("incustest: command not simulated: " + strings.Join(argv, " ") + "\n")
}
