package incustest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"
)

// boot is what the guest has once started: its host key, the directories a
// distribution ships, the image's own files, and — through the image's
// templates or cloud-init — the key in its config, if the image honours it.
func (s *Server) boot(in *instance) {
	img := s.Images[in.Config["image.alias"]]
	in.files["/etc/ssh/ssh_host_ed25519_key.pub"] = File{Data: ssh.MarshalAuthorizedKey(in.hostKey.PublicKey()), Mode: 0o644}
	// Each boot is new: the kernel's boot id, init's start time, the NICs'
	// host-side devices (startNICs).
	in.boots++
	s.startNICs(in)
	in.files["/proc/sys/kernel/random/boot_id"] = File{Data: []byte(fmt.Sprintf("6d2c5e1a-0000-4000-8000-%012d\n", in.boots)), Mode: 0o444}
	in.files["/proc/1/stat"] = File{Data: []byte(fmt.Sprintf("1 (systemd) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 %d 22 33\n", 1000*in.boots)), Mode: 0o444}
	for _, d := range []string{"/", "/etc/", "/etc/ssh/", "/root/"} {
		in.files[d] = File{Mode: 0o755}
	}
	if _, ok := in.files["/etc/machine-id"]; !ok { // systemd writes it at the first boot
		in.files["/etc/machine-id"] = File{Data: fmt.Appendf(nil, "%032x\n", s.seq), Mode: 0o444}
	}
	for p, f := range img.Files {
		in.files[p] = f
	}
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
		in.files["/root/.ssh/"] = File{Mode: 0o700}
		in.files["/root/.ssh/authorized_keys"] = File{Data: []byte(keys), Mode: 0o600}
	}
}

// network is the state's network: a container's interfaces as the kernel
// names them (eth0); a VM's from its agent (enp5s0), or — before the agent,
// if AddressBeforeAgent — the host's view of its NIC, named after the device.
// A VM's guest also runs Docker (cc-ci does): docker0 sorts before enp5s0.
func (s *Server) network(in *instance) map[string]any {
	if in.Status != "Running" {
		return map[string]any{}
	}
	iface := func(addr string) map[string]any {
		return map[string]any{"hwaddr": s.mac(in), "state": "up", "type": "broadcast",
			"addresses": []map[string]string{{"family": "inet", "address": addr, "netmask": "8", "scope": "global"},
				{"family": "inet6", "address": "fe80::1", "netmask": "64", "scope": "link"}}}
	}
	lo := map[string]any{"addresses": []map[string]string{{"family": "inet", "address": "127.0.0.1", "netmask": "8", "scope": "local"}}}
	switch {
	case in.Type != "virtual-machine":
		return map[string]any{"lo": lo, "eth0": iface("127.0.0.1")}
	case s.agentUp(in):
		return map[string]any{"lo": lo, "enp5s0": iface("127.0.0.1"),
			"docker0": map[string]any{"hwaddr": "02:42:00:00:00:01", "addresses": []map[string]string{{"family": "inet", "address": "172.17.0.1", "scope": "global"}}}}
	case s.AddressBeforeAgent:
		return map[string]any{"eth0": iface("127.0.0.1")}
	}
	return map[string]any{}
}

// incusdPATH is the PATH incusd gives a command when the request sets none
// (cmd/incusd/instance_exec.go); for a NixOS container it adds
// /run/current-system/sw/bin, for a VM it does not.
const incusdPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// shellWrapper is the one shell script the fake interprets: run "$@".
const shellWrapper = `exec "$@"`

type result struct {
	code           int
	stdout, stderr []byte
	err            error // the operation fails (incusd: "Command not found")
}

// run is the guest's answer to an exec. The program is looked up as the
// guest would: argv[0] on the agent's (VM) or incusd's PATH — the request's
// PATH is the *environment* of the command, not where it is looked up —
// and, through `/bin/sh -c 'exec "$@"'`, the shell's lookup on the
// request's PATH. The guest has /bin/sh and cat (in /usr/bin, or on NixOS
// in /run/current-system/sw/bin only). A program not found ends the
// operation as incusd does ("Command not found", exit 127), or, found by
// the shell, exits 127 with the shell's message. `cat FILE` reads the file
// map; anything else is not simulated (exit 127, saying so).
func (in *instance) run(argv []string, env map[string]string, img Image) result {
	lookup := incusdPATH
	if img.NixOS && in.Type != "virtual-machine" {
		lookup = "/run/current-system/sw/bin:" + lookup
	}
	viaShell := len(argv) >= 4 && argv[0] == "/bin/sh" && argv[1] == "-c" && argv[2] == shellWrapper
	if viaShell {
		argv, lookup = argv[4:], env["PATH"]
	}
	if len(argv) == 0 {
		return result{code: 0}
	}
	bin := "/usr/bin"
	if img.NixOS {
		bin = "/run/current-system/sw/bin"
	}
	found := argv[0] == "/bin/sh" || argv[0] == bin+"/cat" ||
		argv[0] == "cat" && slices.Contains(strings.Split(lookup, ":"), bin)
	switch {
	case !found && viaShell:
		return result{code: 127, stderr: []byte("sh: 1: exec: " + argv[0] + ": not found\n")}
	case !found:
		return result{code: 127, err: errors.New("Command not found")}
	case path.Base(argv[0]) == "cat" && len(argv) == 2:
		if f, ok := in.files[argv[1]]; ok {
			return result{code: 0, stdout: f.Data}
		}
		return result{code: 1, stderr: []byte("cat: " + argv[1] + ": No such file or directory\n")}
	}
	return result{code: 127, stderr: []byte("incustest: command not simulated: " + strings.Join(argv, " ") + "\n")}
}

// fileCall answers GET, POST and DELETE of …/files?path= as incusd's SFTP
// handlers do (cmd/incusd/instance_file.go): a push sets mode, uid and gid
// only when it creates the file or directory — an existing one keeps its
// own; pushing a directory that exists changes nothing; a GET answers the
// file with its X-Incus-type/mode/uid/gid headers.
func (in *instance) fileCall(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Query().Get("path")
	f, isFile := in.files[p]
	d, isDir := in.files[p+"/"]
	switch r.Method {
	case http.MethodGet:
		if !isFile && !isDir {
			fail(w, 404, "Not found")
			return
		}
		typ := "file"
		switch {
		case isDir:
			f, typ = d, "directory"
		case f.Link != "":
			typ, f.Data = "symlink", []byte(f.Link)
		}
		w.Header().Set("X-Incus-type", typ)
		w.Header().Set("X-Incus-mode", fmt.Sprintf("%04o", f.Mode))
		w.Header().Set("X-Incus-uid", strconv.Itoa(f.UID))
		w.Header().Set("X-Incus-gid", strconv.Itoa(f.GID))
		_, _ = w.Write(f.Data)
	case http.MethodDelete:
		if !isFile {
			fail(w, 404, "Not found")
			return
		}
		delete(in.files, p)
		reply(w, nil)
	case http.MethodPost:
		mode, _ := strconv.ParseInt(r.Header.Get("X-Incus-mode"), 8, 32)
		uid, _ := strconv.Atoi(r.Header.Get("X-Incus-uid"))
		gid, _ := strconv.Atoi(r.Header.Get("X-Incus-gid"))
		created := File{Mode: int(mode), UID: uid, GID: gid}
		if r.Header.Get("X-Incus-type") == "directory" {
			if !isDir {
				in.files[p+"/"] = created
			}
			reply(w, nil)
			return
		}
		if dir := p[:strings.LastIndex(p, "/")]; dir != "" {
			if _, ok := in.files[dir+"/"]; !ok {
				fail(w, 404, "Failed to create file: parent directory "+dir+" does not exist")
				return
			}
		}
		data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if isFile {
			f.Data = data // overwrite: the file keeps its mode and owner
			in.files[p] = f
		} else {
			created.Data = data
			in.files[p] = created
		}
		reply(w, nil)
	default:
		fail(w, 405, "method not allowed")
	}
}
