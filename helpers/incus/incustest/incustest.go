// Package incustest is a small fake of the Incus REST API, in the spirit of
// net/http/httptest: enough of the instance lifecycle (create, start, state,
// exec with recorded output, files, stop, delete, operations) for the
// harness's machine code to run against it unchanged, with a container or a
// virtual machine behind it.
//
// Each answer follows Incus's API reference (doc/rest-api.yaml in the Incus
// sources; the path is named at each handler) and, where the reference is
// silent, incusd's own code on the stable-6.0 branch (cited at the answer):
// sync errors are what response.SmartError/BadRequest give, failures inside
// an operation answer 202 and end the operation with status_code 400 and the
// error's text. What differs for a virtual-machine: the instance is
// "Running" as soon as QEMU runs, but exec and file calls go through the
// incus-agent inside the guest and fail with "VM agent isn't currently
// running" until it answers; file calls on a stopped VM fail (a container's
// files are reachable stopped); the guest's own interface names (enp5s0)
// are reported only by the agent; an image that needs secure boot off
// (NixOS) never boots — Running, no agent — unless security.secureboot=false,
// and one that declares it (requirements.secureboot=false) fails to start.
//
// The guest is simulated (guest.go): a file map with modes and owners, an
// ed25519 SSH host key at /etc/ssh/ssh_host_ed25519_key.pub, commands looked
// up on a PATH as incusd and the agent do, and one in-process SSH server that
// accepts the keys in /root/.ssh/authorized_keys (or, if the image honours
// it, user.ssh_authorized_keys) and answers every command with exit 0.
package incustest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/remote"
)

// Image is what the fake knows of an image alias.
type Image struct {
	// Type is the image's type (container or virtual-machine); an instance
	// of the other type is refused at creation ("Requested image's type …
	// doesn't match instance type …": cmd/incusd/instance.go). "" fits both.
	Type string
	// HonoursSSHKeyTemplate: the image's templates write user.ssh_authorized_keys
	// into root's authorized_keys (the lab's image does; the real one may not).
	HonoursSSHKeyTemplate bool
	// NeedsSecureBootOff: a VM from it boots only with security.secureboot=false
	// (unsigned: the firmware refuses it; the agent never answers).
	NeedsSecureBootOff bool
	// DeclaresSecureBootOff: the image says so (requirements.secureboot=false):
	// incusd refuses to start a VM from it unless security.secureboot=false
	// (internal/server/instance/drivers/driver_qemu.go).
	DeclaresSecureBootOff bool
	// RunsCloudInit: the image runs cloud-init, which installs the keys of
	// cloud-init.user-data's users (only root's are simulated).
	RunsCloudInit bool
	// NixOS: the guest's commands are in /run/current-system/sw/bin only.
	NixOS bool
	// Files the image ships besides the usual directories (path → file; a
	// directory's path ends in /).
	Files map[string]File
}

// File is a file (or directory) in a guest; with Link, a symlink to it.
type File struct {
	Data     []byte
	Mode     int
	UID, GID int
	Link     string
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
	// RestartWithoutBoot: a restart answers success but the guest does not
	// boot again (a harness that trusts the answer is wrong).
	RestartWithoutBoot bool
	// StaticMAC: the profile's NIC has a fixed hwaddr, so Incus writes no
	// volatile.eth0.hwaddr (fillNetworkDevice, driver_{lxc,qemu}.go).
	StaticMAC string
	// Profile is config the default profile adds to every instance's
	// expanded config (e.g. security.protection.delete).
	Profile map[string]string
	// Projects that exist (GET /1.0/projects/{name}); New makes "default".
	Projects map[string]bool
	// Restricted, when not nil, makes the client a TLS certificate
	// restricted to these projects: its trust entry says so and listings
	// leave the other projects out, as incusd's TLS authorizer does.
	Restricted []string

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
	files                       map[string]File
	hostKey                     ssh.Signer
	boots                       int // how often it booted (its boot id and init start time change)
	calls                       int // agent-gated calls since start
}

type op struct {
	ID, Description, Status, Err string
	StatusCode                   int
	Metadata                     any
}

// New starts the fake on a unix socket in dir (the harness reaches the lab's
// Incus the same way: incus.Config{Socket: s.Socket}) and its guest SSH server.
func New(dir string) (*Server, error) {
	s := &Server{Images: map[string]Image{}, Profile: map[string]string{}, Projects: map[string]bool{"default": true}, instances: map[string]*instance{}, ops: map[string]*op{}, logs: map[string][]byte{},
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

// clientFingerprint is the restricted client certificate's fingerprint.
const clientFingerprint = "f00dfeedc0ffee00f00dfeedc0ffee00f00dfeedc0ffee00f00dfeedc0ffee00"

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
	case path == "" && r.Method == http.MethodGet: // GET /1.0 (auth_user_*: API extension auth_user)
		method, user := "unix", "root"
		if s.Restricted != nil {
			method, user = "tls", clientFingerprint
		}
		reply(w, map[string]any{"auth": "trusted", "api_version": "1.0", "api_status": "stable", "api_extensions": extensions,
			"auth_user_method": method, "auth_user_name": user,
			"environment": map[string]any{"server_name": "incustest", "driver": "lxc | qemu"}})
	case path == "/certificates/"+clientFingerprint && r.Method == http.MethodGet: // GET /1.0/certificates/{fingerprint}
		reply(w, map[string]any{"fingerprint": clientFingerprint, "type": "client", "restricted": s.Restricted != nil, "projects": s.Restricted})
	case strings.HasPrefix(path, "/operations/"): // GET /1.0/operations/{id}/wait
		id := strings.TrimSuffix(strings.TrimPrefix(path, "/operations/"), "/wait")
		o, ok := s.ops[id]
		if !ok {
			fail(w, 404, "Operation not found")
			return
		}
		reply(w, map[string]any{"id": o.ID, "description": o.Description, "status": o.Status,
			"status_code": o.StatusCode, "err": o.Err, "metadata": o.Metadata})
	case strings.HasPrefix(path, "/projects/") && r.Method == http.MethodGet: // GET /1.0/projects/{name}
		name := strings.TrimPrefix(path, "/projects/")
		if !s.Projects[name] || s.Restricted != nil && !slices.Contains(s.Restricted, name) {
			fail(w, 404, "Project not found")
			return
		}
		reply(w, map[string]any{"name": name, "config": map[string]string{"features.images": "true", "features.profiles": "true"}})
	case strings.HasPrefix(path, "/images/aliases/") && r.Method == http.MethodGet: // GET /1.0/images/aliases/{name}
		alias := strings.TrimPrefix(path, "/images/aliases/")
		img, ok := s.Images[alias]
		if !ok {
			fail(w, 404, "Image alias not found")
			return
		}
		reply(w, map[string]any{"name": alias, "target": "f1" + fmt.Sprintf("%062x", len(alias)), "type": img.Type})
	case strings.HasPrefix(path, "/images/") && r.Method == http.MethodGet: // GET /1.0/images/{fingerprint}
		for alias, img := range s.Images {
			if strings.TrimPrefix(path, "/images/") == "f1"+fmt.Sprintf("%062x", len(alias)) {
				props := map[string]string{"os": "fake"}
				if img.DeclaresSecureBootOff {
					props["requirements.secureboot"] = "false"
				}
				reply(w, map[string]any{"fingerprint": strings.TrimPrefix(path, "/images/"), "type": img.Type, "properties": props})
				return
			}
		}
		fail(w, 404, "Image not found")
	case path == "/profiles/default" && r.Method == http.MethodGet: // GET /1.0/profiles/{name}
		reply(w, map[string]any{"name": "default", "config": s.Profile, "devices": s.devices()})
	case path == "/instances" && r.Method == http.MethodGet: // GET /1.0/instances?recursion=1
		var out []map[string]any
		for _, in := range s.instances {
			// A restricted certificate's listing is filtered, not refused
			// (cmd/incusd/instances_get.go with GetPermissionChecker).
			if s.Restricted != nil && !slices.Contains(s.Restricted, in.Project) {
				continue
			}
			if r.URL.Query().Get("all-projects") == "true" || in.Project == project {
				out = append(out, s.api(in))
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

func (s *Server) api(in *instance) map[string]any {
	expanded := maps.Clone(s.Profile)
	maps.Copy(expanded, in.Config)
	return map[string]any{"name": in.Name, "project": in.Project, "type": in.Type, "status": in.Status,
		"created_at": in.CreatedAt, "config": in.Config, "expanded_config": expanded, "expanded_devices": s.devices()}
}

// devices are the default profile's: a root disk and a NIC.
func (s *Server) devices() map[string]map[string]string {
	nic := map[string]string{"type": "nic", "network": "incusbr0", "name": "eth0"}
	if s.StaticMAC != "" {
		nic["hwaddr"] = s.StaticMAC
	}
	return map[string]map[string]string{"eth0": nic, "root": {"type": "disk", "path": "/", "pool": "default"}}
}

// extensions are the API extensions the fake answers for (internal/version/api.go).
var extensions = []string{"projects", "instances", "instance_all_projects", "container_exec_recording", "file_delete", "auth_user", "virtual-machines"}

// PutFile places a file in a running instance's guest (a test's setup).
func (s *Server) PutFile(project, name, path string, f File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instances[project+"/"+name].files[path] = f
}

// mac is the instance's NIC's MAC: the profile's, else the volatile one.
func (s *Server) mac(in *instance) string {
	if s.StaticMAC != "" {
		return s.StaticMAC
	}
	return in.Config["volatile.eth0.hwaddr"]
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
	if !s.Projects[project] { // cmd/incusd/instances_post.go instancesPost: the project is loaded first
		fail(w, 404, "Failed loading project: Project not found")
		return
	}
	if _, exists := s.instances[project+"/"+req.Name]; exists {
		s.async(w, "Creating instance", fmt.Errorf("Instance %q already exists", req.Name), nil)
		return
	}
	img, ok := s.Images[req.Source.Alias]
	if !ok {
		s.async(w, "Creating instance", fmt.Errorf("Failed getting image: Image %q not found", req.Source.Alias), nil)
		return
	}
	if req.Type == "" {
		req.Type = "container"
	}
	if img.Type != "" && img.Type != req.Type { // cmd/incusd/instance.go, instanceCreateFromImage
		s.async(w, "Creating instance", fmt.Errorf("Requested image's type %q doesn't match instance type %q", img.Type, req.Type), nil)
		return
	}
	signer, _, _ := remote.NewKey()
	cfg := map[string]string{"volatile.uuid": fmt.Sprintf("uuid-%d-%d", time.Now().UnixNano(), s.seq), "image.alias": req.Source.Alias}
	if s.StaticMAC == "" {
		cfg["volatile.eth0.hwaddr"] = "10:66:6a:00:00:01"
	}
	maps.Copy(cfg, req.Config)
	s.instances[project+"/"+req.Name] = &instance{Name: req.Name, Project: project, Type: req.Type, Status: "Stopped",
		Config: cfg, CreatedAt: time.Now().UTC(), hostKey: signer, files: map[string]File{}}
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

// guestAnswers is whether a file call reaches the guest; if not, it has
// answered as incusd does: a VM's files go through its agent, so a stopped
// VM (driver_qemu.go FileSFTPConn: "Instance is not running") or one whose
// agent is down is an internal error (instanceFilePost: InternalError, 500).
// A container's files are reached from the host, running or not.
func (s *Server) guestAnswers(w http.ResponseWriter, in *instance) bool {
	switch {
	case in.Type != "virtual-machine":
		return true
	case in.Status != "Running":
		fail(w, 500, "Instance is not running")
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
		reply(w, s.api(in))
	case sub == "" && r.Method == http.MethodDelete: // DELETE /1.0/instances/{name}
		if running { // cmd/incusd/instance_delete.go: checked before the operation
			fail(w, 400, "Instance is running")
			return
		}
		if s.Profile["security.protection.delete"] == "true" || in.Config["security.protection.delete"] == "true" {
			s.async(w, "Deleting instance", fmt.Errorf("Instance is protected"), nil) // drivers' Delete, inside the operation
			return
		}
		delete(s.instances, project+"/"+name)
		s.async(w, "Deleting instance", nil, nil)
	case sub == "state" && r.Method == http.MethodPut: // PUT /1.0/instances/{name}/state
		s.changeState(w, r, in)
	case sub == "state" && r.Method == http.MethodGet: // GET /1.0/instances/{name}/state
		reply(w, map[string]any{"status": in.Status, "network": s.network(in)})
	case sub == "exec" && r.Method == http.MethodPost: // POST /1.0/instances/{name}/exec (record-output)
		s.exec(w, r, in)
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
	case sub == "files": // GET/POST/DELETE /1.0/instances/{name}/files
		if s.guestAnswers(w, in) {
			in.fileCall(w, r)
		}
	default:
		fail(w, 404, "not found")
	}
}

// changeState starts, restarts or stops an instance (PUT …/state).
func (s *Server) changeState(w http.ResponseWriter, r *http.Request, in *instance) {
	var req struct{ Action string }
	_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
	switch req.Action {
	case "start":
		img := s.Images[in.Config["image.alias"]]
		if in.Type == "virtual-machine" && img.DeclaresSecureBootOff && in.Config["security.secureboot"] != "false" {
			s.async(w, "Starting instance", errors.New("The image used by this instance is incompatible with secureboot. "+
				"Please set security.secureboot=false on the instance"), nil)
			return
		}
		in.Status, in.calls = "Running", 0
		s.boot(in)
	case "restart": // instance_common.go restartCommon: only a running instance
		if in.Status != "Running" {
			s.async(w, "Restarting instance", fmt.Errorf("The instance isn't running"), nil)
			return
		}
		if !s.RestartWithoutBoot {
			in.calls = 0 // a VM's agent is down again until it boots
			s.boot(in)
		}
	case "stop":
		if in.Status != "Running" {
			s.async(w, "Stopping instance", fmt.Errorf("The instance is already stopped"), nil)
			return
		}
		in.Status = "Stopped"
	default:
		s.async(w, "Changing state", fmt.Errorf("unknown action %q", req.Action), nil)
		return
	}
	s.async(w, "Changing state", nil, nil)
}

// exec answers as cmd/incusd/instance_exec.go does: a stopped instance is a
// sync 400; everything else is an operation, which fails when a VM's agent
// is down or the command is not found (with its exit code in the metadata).
func (s *Server) exec(w http.ResponseWriter, r *http.Request, in *instance) {
	if in.Status != "Running" {
		fail(w, 400, "Instance is not running")
		return
	}
	var req struct {
		Command     []string
		Environment map[string]string
	}
	_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
	if !s.agentUp(in) {
		s.async(w, "Executing command", errors.New(agentOffline), nil)
		return
	}
	res := in.run(req.Command, req.Environment, s.Images[in.Config["image.alias"]])
	base := fmt.Sprintf("/1.0/instances/%s/logs/exec-output/exec_%d", in.Name, s.seq)
	s.logs[base+".stdout"], s.logs[base+".stderr"] = res.stdout, res.stderr
	s.async(w, "Executing command", res.err, map[string]any{"return": res.code,
		"output": map[string]string{"1": base + ".stdout", "2": base + ".stderr"}})
}
