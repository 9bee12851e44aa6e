package testrun

import (
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/localfile"
	"github.com/cc-ci/acceptance/helpers/machine"
)

// state is what SKIP_teardown leaves behind so that a later run with
// SKIP_provision can reuse the machine: "keep the machine, inspect, rerun".
// The SSH private key goes to a separate 0600 file; the state file itself
// holds nothing secret (names, address, the pinned public host key).
type state struct {
	RunID     string    `json:"run_id"`
	Project   string    `json:"project"`
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	Image     string    `json:"image"`
	IP        string    `json:"ip"`
	User      string    `json:"user"`
	HostKey   string    `json:"host_key"` // authorized_keys format
	KeyFile   string    `json:"key_file"`
	CreatedAt time.Time `json:"created_at"`
	Memory    int64     `json:"memory"`
	UUID      string    `json:"uuid"` // volatile.uuid: reuse checks it against Incus
	// The install the keeping run did on it (SKIP_install reuses it).
	Install *keptInstall `json:"install,omitempty"`
}

// keptInstall is an Install as the state file keeps it (the error as text,
// redacted when it was recorded).
type keptInstall struct {
	RunID    string             `json:"run_id"` // the run that installed the machine
	Record   *installdoc.Record `json:"record"`
	Failed   string             `json:"failed,omitempty"`
	Started  time.Time          `json:"started"`
	Ended    time.Time          `json:"ended"`
	Contacts []Contact          `json:"contacts,omitempty"`
}

// keyFile is where the SSH key of a kept machine goes: 0600, in a 0700 directory.
func keyFile(statePath string) string { return filepath.Join(statePath+".d", "id_ed25519") }

func saveState(path string, mc *machine.Machine, inst *keptInstall) error {
	keyFile := keyFile(path)
	block, err := ssh.MarshalPrivateKey(mc.Key, "cc-ci harness run "+mc.RunID)
	if err != nil {
		return fmt.Errorf("save run state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		return fmt.Errorf("save run state: %w", err)
	}
	if err := os.Chmod(filepath.Dir(keyFile), 0o700); err != nil {
		return fmt.Errorf("save run state: %w", err)
	}
	if err := writePrivate(keyFile, pem.EncodeToMemory(block)); err != nil {
		return fmt.Errorf("save run state: %w", err)
	}
	st := state{RunID: mc.RunID, Project: mc.Project, Name: mc.Name, Type: mc.Type, Image: mc.Image, IP: mc.IP,
		User: mc.User, HostKey: string(ssh.MarshalAuthorizedKey(mc.HostKey)), KeyFile: keyFile,
		CreatedAt: mc.CreatedAt, Memory: mc.Memory, UUID: mc.UUID, Install: inst}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writePrivate(path, append(b, '\n'))
}

func loadState(path string) (*machine.Machine, *keptInstall, error) {
	b, err := localfile.Read(path, 64<<10)
	if err != nil {
		return nil, nil, fmt.Errorf("SKIP_provision: read run state %s (written by a run with SKIP_teardown=1): %w", path, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, nil, fmt.Errorf("SKIP_provision: run state %s: %w", path, err)
	}
	for field, v := range map[string]string{"run_id": st.RunID, "project": st.Project, "name": st.Name,
		"host_key": st.HostKey, "key_file": st.KeyFile, "uuid": st.UUID} {
		if v == "" {
			return nil, nil, fmt.Errorf("SKIP_provision: run state %s: field %s is required", path, field)
		}
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(st.HostKey))
	if err != nil {
		return nil, nil, fmt.Errorf("SKIP_provision: run state %s: field host_key: %w", path, err)
	}
	if st.KeyFile != keyFile(path) {
		// The key lives beside the state file; a state file does not get to
		// make the harness read some other file.
		return nil, nil, fmt.Errorf("SKIP_provision: run state %s: field key_file %q is not %s", path, st.KeyFile, keyFile(path))
	}
	kb, err := localfile.Read(st.KeyFile, 16<<10)
	if err != nil {
		return nil, nil, fmt.Errorf("SKIP_provision: run state %s: field key_file: %w", path, err)
	}
	raw, err := ssh.ParseRawPrivateKey(kb)
	if err != nil {
		return nil, nil, fmt.Errorf("SKIP_provision: key file %s: %w", st.KeyFile, err)
	}
	key, ok := raw.(*ed25519.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("SKIP_provision: key file %s: not an ed25519 key", st.KeyFile)
	}
	signer, err := ssh.NewSignerFromKey(*key)
	if err != nil {
		return nil, nil, err
	}
	if st.Install != nil && st.Install.Record == nil {
		return nil, nil, fmt.Errorf("SKIP_provision: run state %s: field install has no record", path)
	}
	return &machine.Machine{Name: st.Name, Project: st.Project, Type: st.Type, Image: st.Image, RunID: st.RunID,
		HostKey: hk, Signer: signer, Key: *key, User: st.User, CreatedAt: st.CreatedAt, Memory: st.Memory, UUID: st.UUID}, st.Install, nil
}

func removeState(path string) {
	_ = os.Remove(path)
	_ = os.RemoveAll(filepath.Dir(keyFile(path)))
}

// writePrivate writes a file only its owner can read, atomically. A
// directory it creates is the owner's only, too.
func writePrivate(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
