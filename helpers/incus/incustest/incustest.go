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
// it, user.ssh_authorized_keys) and answers a command as Server.Guest
// scripts it, `cat FILE` from the guest's files, anything else with exit 0.
package incustest

import (
	"encoding/json"
	"fmt"
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
	// ShutdownTakes is how long the guest takes to shut down cleanly (a VM
	// stopping Docker Swarm): a clean stop or restart whose timeout is
	// shorter fails and leaves it running, as incusd's does.
	ShutdownTakes time.Duration
	// StaticMAC: the profile's NIC has a fixed hwaddr, so Incus writes no
	// volatile.eth0.hwaddr (fillNetworkDevice, driver_{lxc,qemu}.go).
	StaticMAC string
	// ExtraNICs are NIC devices the default profile has besides eth0 (e.g.
	// a macvlan one, whose sends the host cannot observe).
	ExtraNICs map[string]map[string]string
	// Profile is config the default profile adds to every instance's
	// expanded config (e.g. security.protection.delete).
	Profile map[string]string
	// Projects that exist (GET /1.0/projects/{name}); New makes "default".
	Projects map[string]bool
	// Guest, when set, scripts the guests' SSH answers: it is asked first
	// for every command (ok false: not scripted). Unscripted, `cat FILE`
	// reads the guest's file map and anything else exits 0 with no output.
	Guest func(name, command string) (stdout, stderr string, code int, ok bool)
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
	states      []StateRequest
}

// StateRequest is one PUT …/state as the client sent it.
type StateRequest struct {
	Action  string
	Timeout int // seconds; -1 when absent (incusd's default)
	Force   bool
}

// StateRequests are the state changes asked for, in order.
func (s *Server) StateRequests() []StateRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StateRequest(nil), s.states...)
}

type instance struct {
	Name, Project, Type, Status string
	Config                      map[string]string
	Devices                     map[string]map[string]string // the instance's own
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
// ServerFingerprint is the fake server's certificate fingerprint (GET /1.0's environment).
const ServerFingerprint = "0f5c2b8e9d1a4c7f3e6b0a9d8c7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e"

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
			"environment": map[string]any{"server_name": "incustest", "driver": "lxc | qemu", "certificate_fingerprint": ServerFingerprint}})
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
	case path == "/networks/incusbr0" && r.Method == http.MethodGet: // GET /1.0/networks/{name}
		reply(w, map[string]any{"name": "incusbr0", "type": "bridge", "managed": true})
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

// extensions are the API extensions the fake answers for (internal/version/api.go).
var extensions = []string{"projects", "instances", "instance_all_projects", "container_exec_recording", "file_delete", "auth_user", "virtual-machines"}

// PutFile places a file in a running instance's guest (a test's setup).
func (s *Server) PutFile(project, name, path string, f File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.instances[project+"/"+name].files[path] = f
}
