package incustest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/remote"
)

// The instance endpoints (/1.0/instances/…): create, state, exec and the
// agent's answers, each as incusd gives it (the path named at each handler).

func (s *Server) api(in *instance) map[string]any {
	expanded := maps.Clone(s.Profile)
	maps.Copy(expanded, in.Config)
	return map[string]any{"name": in.Name, "project": in.Project, "type": in.Type, "status": in.Status,
		"created_at": in.CreatedAt, "config": in.Config, "expanded_config": expanded, "devices": in.Devices,
		"expanded_devices": s.expandedDevices(in)}
}

// devices are the default profile's: a root disk and a NIC (and ExtraNICs).
func (s *Server) devices() map[string]map[string]string {
	nic := map[string]string{"type": "nic", "network": "incusbr0", "name": "eth0"}
	if s.StaticMAC != "" {
		nic["hwaddr"] = s.StaticMAC
	}
	out := map[string]map[string]string{"eth0": nic, "root": {"type": "disk", "path": "/", "pool": "default"}}
	for name, d := range s.ExtraNICs {
		out[name] = maps.Clone(d)
	}
	return out
}

// expandedDevices are the profile's with the instance's own on top, each
// replacing the profile's of its name whole (ExpandInstanceDevices,
// internal/server/db/profiles.go).
func (s *Server) expandedDevices(in *instance) map[string]map[string]string {
	out := s.devices()
	maps.Copy(out, in.Devices)
	return out
}

// startNICs records each NIC's host side as incusd does at each start:
// the device's host_name, else a name made for this boot — a container's
// veth, a VM's tap (generateAndPersistHostName,
// internal/server/device/device_common.go); a macvlan or physical NIC has
// none.
func (s *Server) startNICs(in *instance) {
	for dev, d := range s.expandedDevices(in) {
		if d["type"] != "nic" || d["nictype"] == "macvlan" || d["nictype"] == "physical" {
			continue
		}
		h := d["host_name"]
		if h == "" {
			h = fmt.Sprintf("%s%08x", map[bool]string{true: "tap", false: "veth"}[in.Type == "virtual-machine"], in.boots)
		}
		in.Config["volatile."+dev+".host_name"] = h
	}
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
		Name    string                       `json:"name"`
		Type    string                       `json:"type"`
		Config  map[string]string            `json:"config"`
		Devices map[string]map[string]string `json:"devices"`
		Source  struct{ Alias string }       `json:"source"`
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
		Config: cfg, Devices: req.Devices, CreatedAt: time.Now().UTC(), hostKey: signer, files: map[string]File{}}
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
	req := StateRequest{Timeout: -1} // instance_state.go: absent means no timeout given
	_ = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
	s.states = append(s.states, req)
	if err := s.cleanShutdown(in, req); err != nil {
		s.async(w, "Changing state", err, nil)
		return
	}
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

// cleanShutdown is a clean stop or restart as incusd's doInstanceStatePut
// runs it (cmd/incusd/instance_state.go): force means timeout 0, a forced
// stop; no timeout means 600 s; a guest not down within the timeout fails
// the operation and stays running (Shutdown, driver_{lxc,qemu}.go).
func (s *Server) cleanShutdown(in *instance, req StateRequest) error {
	if (req.Action != "stop" && req.Action != "restart") || req.Force || in.Status != "Running" {
		return nil
	}
	timeout := time.Duration(req.Timeout) * time.Second
	if req.Timeout < 0 {
		timeout = 600 * time.Second
	}
	if timeout == 0 || s.ShutdownTakes <= timeout {
		return nil
	}
	return errors.New(`Failed shutting down instance, status is "Running": context deadline exceeded`)
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
