// Package machine creates, reaches and destroys throwaway machines on Incus:
// run-unique names, harness labels, guardrails checked before creation, an SSH
// host key pinned out of band, destruction that proves absence, and a reaper
// that only ever removes expired instances carrying the harness's label.
package machine

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/remote"
	"github.com/cc-ci/acceptance/helpers/size"
	"github.com/cc-ci/acceptance/helpers/wait"
)

// CreatedBy is the value of the created-by label on every harness instance.
const CreatedBy = "cc-ci-acceptance"

// Labels are the user.* config keys the harness writes, under one prefix.
type Labels struct{ Prefix string }

func (l Labels) RunID() string     { return "user." + l.Prefix + ".run-id" }
func (l Labels) CreatedBy() string { return "user." + l.Prefix + ".created-by" }
func (l Labels) ExpiresAt() string { return "user." + l.Prefix + ".expires-at" }

// Spec is what to create: the machine settings, how long it may live and
// how long it may take to boot.
type Spec struct {
	config.MachineSettings
	TTL         time.Duration // expires-at = creation + TTL
	BootTimeout time.Duration // create → SSH ready
}

// SpecFrom takes the machine spec from the configuration.
func SpecFrom(c *config.Config) Spec {
	return Spec{MachineSettings: c.Machine, TTL: c.Guardrails.TTL, BootTimeout: c.Timeouts.BootTimeout}
}

// SSH key ways (Spec.SSHKeyVia).
const (
	KeyViaFile      = "file"
	KeyViaTemplate  = "template"
	KeyViaCloudInit = "cloud-init"
)

// Manager creates machines for one test run and remembers them for teardown.
type Manager struct {
	Client *incus.Client
	Guard  config.Guardrails
	Labels Labels
	RunID  string
	Redact *redact.Redactor
	Log    func(format string, args ...any)
	// Tracker, if set, is told each instance before Incus is asked for it and
	// its uuid once known (the run's guardian); an error aborts the creation.
	Tracker Tracker
	// SSHPort is where machines' sshd listens (0: 22). Tests against a fake
	// Incus point it at their own SSH server.
	SSHPort int

	mu      sync.Mutex
	created []*Machine // every machine this run asked for, even half-created ones
	adopted []*Machine // machines of an earlier run, reused after validation (SKIP_provision)
}

// Tracker follows the instances a run creates, from outside the run's process.
type Tracker interface {
	Track(project, name string) error
	Pin(project, name, uuid string) error
}

// Machine is one throwaway instance.
type Machine struct {
	Name      string
	Project   string
	Type      string
	Image     string
	RunID     string
	IP        string
	HostKey   ssh.PublicKey // pinned, read through Incus exec
	Signer    ssh.Signer    // this run's SSH key
	Key       ed25519.PrivateKey
	User      string
	CreatedAt time.Time
	Memory    int64
	UUID      string // volatile.uuid, recorded at creation: every change checks it

	mgr *Manager
}

// Claim is what proves the machine is the harness's to change.
func (mc *Machine) Claim() Claim {
	return Claim{Project: mc.Project, Name: mc.Name, RunID: mc.RunID, UUID: mc.UUID}
}

// Verify reads the machine from Incus and checks it is still the one this
// harness created (project, labels, uuid).
func (mc *Machine) Verify(ctx context.Context) (*incus.Instance, error) {
	return VerifyOwned(ctx, mc.mgr.Client, mc.mgr.Guard, mc.mgr.Labels, mc.Claim())
}

// Exec runs argv on the machine through Incus, after checking ownership.
func (mc *Machine) Exec(ctx context.Context, argv []string) (*incus.ExecResult, error) {
	if _, err := mc.Verify(ctx); err != nil {
		return nil, fmt.Errorf("exec on %s: %w", mc.Name, err)
	}
	res, err := mc.mgr.Client.Exec(ctx, mc.Project, mc.Name, argv, nil)
	return res, mc.mgr.Redact.RedactError(err)
}

// ReachedBySSH proves cl is connected to this machine and not another: its
// /etc/machine-id read over SSH is the one Incus reads. (Not the host name:
// the image chooses it — a stock NixOS one says "nixos" whatever the
// instance is called.)
func (mc *Machine) ReachedBySSH(ctx context.Context, cl *remote.Client) error {
	res, err := cl.Run(ctx, "cat /etc/machine-id", bounds.Command)
	if err != nil {
		return err
	}
	out, err := mc.Exec(ctx, []string{"cat", "/etc/machine-id"})
	if err != nil {
		return err
	}
	id := strings.TrimSpace(string(out.Stdout))
	switch {
	case id == "":
		return fmt.Errorf("%s has no machine id (read through Incus)", mc.Name)
	case id != strings.TrimSpace(string(res.Stdout)):
		return fmt.Errorf("SSH reached another machine than %s: /etc/machine-id over SSH and through Incus differ", mc.Name)
	}
	return nil
}

// PushFile writes a file on the machine through Incus, after checking ownership.
func (mc *Machine) PushFile(ctx context.Context, f incus.FileSpec) error {
	if _, err := mc.Verify(ctx); err != nil {
		return fmt.Errorf("push %s to %s: %w", f.Path, mc.Name, err)
	}
	return mc.mgr.Redact.RedactError(mc.mgr.Client.PushFile(ctx, mc.Project, mc.Name, f))
}

// Restart restarts the machine through Incus — a clean shutdown and boot,
// as `incus restart` does — after checking it is ours, and waits until it
// answers again as it did after creation (keyVia: Spec.SSHKeyVia), with the
// host key pinned at creation. Its address is read again.
func (mc *Machine) Restart(ctx context.Context, timeout time.Duration, keyVia string) error {
	if _, err := mc.Verify(ctx); err != nil {
		return fmt.Errorf("restart %s: %w", mc.Name, err)
	}
	pinned := mc.HostKey
	before, err := mc.bootMark(ctx)
	if err != nil {
		return fmt.Errorf("restart %s: tell its boots apart: %w", mc.Name, err)
	}
	if err := mc.mgr.Client.SetState(ctx, mc.Project, mc.Name, "restart", false); err != nil {
		return err
	}
	if err := mc.awaitReady(ctx, timeout, keyVia); err != nil {
		return fmt.Errorf("after restarting %s: %w", mc.Name, err)
	}
	if after, err := mc.bootMark(ctx); err != nil || after == before {
		return fmt.Errorf("restart %s: Incus said done, but the machine did not boot again (boot id and init's start time %q before and after; %v)", mc.Name, before, err)
	}
	if pinned != nil && !bytes.Equal(pinned.Marshal(), mc.HostKey.Marshal()) {
		return &OwnershipError{Instance: mc.Project + "/" + mc.Name,
			Why: "after the restart its SSH host key is " + ssh.FingerprintSHA256(mc.HostKey) + ", not the one pinned at creation"}
	}
	return nil
}

// NewRunID returns a run id that sorts by time and is unique across runs.
func NewRunID(now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "r" + now.UTC().Format("20060102t150405") + "-" + hex.EncodeToString(b)
}

func (m *Manager) logf(format string, args ...any) {
	if m.Log != nil {
		m.Log(format, args...)
	}
}

// Created returns the machines this manager asked Incus for (not the ones it adopted).
func (m *Manager) Created() []*Machine {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Machine(nil), m.created...)
}

// Adopted returns the machines of earlier runs this manager took over.
func (m *Manager) Adopted() []*Machine {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Machine(nil), m.adopted...)
}

// Create checks the guardrails, creates and starts a labelled instance, and
// waits until it has an address and answers SSH with its pinned host key.
// On any error after the instance was requested, the caller's teardown
// (DestroyAll) still knows about it.
func (m *Manager) Create(ctx context.Context, spec Spec) (*Machine, error) {
	if err := checkProject(m.Guard, spec.Project); err != nil {
		return nil, err
	}
	m.mu.Lock()
	n := len(m.created)
	m.mu.Unlock()
	if n >= m.Guard.MaxMachines {
		return nil, &GuardrailError{Rule: "machines per run",
			Detail: fmt.Sprintf("this run already created %d machine(s); the limit is %d", n, m.Guard.MaxMachines)}
	}
	ram, err := RAM(ctx, m.Client, m.Guard, spec.Memory)
	if err != nil {
		return nil, &GuardrailError{Rule: "RAM cap", Detail: "cannot add up the running instances, so nothing is created: " + err.Error()}
	}
	m.logf("RAM guardrail: %s", ram)
	if !ram.Fits {
		return nil, &GuardrailError{Rule: "RAM cap", Detail: ram.String()}
	}

	signer, priv, err := remote.NewKey()
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	name := "ccci-" + m.RunID
	if n > 0 {
		name = fmt.Sprintf("%s-%d", name, n)
	}
	mc := &Machine{Name: name, Project: spec.Project, Type: spec.InstanceType, Image: spec.Image, RunID: m.RunID,
		Signer: signer, Key: priv, User: spec.SSHUser, Memory: spec.Memory, mgr: m}
	if m.Tracker != nil {
		if err := m.Tracker.Track(spec.Project, name); err != nil {
			return nil, fmt.Errorf("create machine: %w", err)
		}
	}
	m.mu.Lock()
	m.created = append(m.created, mc)
	m.mu.Unlock()

	cfg, err := instanceConfig(spec, m.Labels, m.RunID, now, signer.PublicKey())
	if err != nil {
		return mc, err
	}
	start := time.Now()
	m.logf("creating %s/%s from image %q (%s, %s)", spec.Project, name, spec.Image, spec.InstanceType, size.Format(spec.Memory))
	// Create and start are not abandoned half way when ctx is cancelled: Incus
	// would finish them without us and a teardown racing them could miss the
	// instance. They run to completion (bounded), then ctx is checked.
	settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), spec.BootTimeout)
	defer cancel()
	if err := m.Client.CreateInstance(settle, incus.InstanceSpec{Name: name, Project: spec.Project, Type: spec.InstanceType,
		ImageAlias: spec.Image, Config: cfg}); err != nil {
		return mc, fmt.Errorf("create machine: %w", err)
	}
	if err := m.Client.SetState(settle, spec.Project, name, "start", false); err != nil {
		return mc, fmt.Errorf("create machine: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return mc, fmt.Errorf("create machine %s: %w", name, err)
	}
	// Our labels with our random run id, under the name we just created:
	// record its uuid, which every later change is checked against.
	in, err := VerifyOwned(ctx, m.Client, m.Guard, m.Labels, mc.Claim())
	if err != nil {
		return mc, fmt.Errorf("create machine: %w", err)
	}
	if in.Config[UUIDKey] == "" {
		return mc, fmt.Errorf("create machine %s: Incus reports no %s", name, UUIDKey)
	}
	mc.CreatedAt, mc.UUID = in.CreatedAt, in.Config[UUIDKey]
	if m.Tracker != nil {
		if err := m.Tracker.Pin(spec.Project, name, mc.UUID); err != nil {
			return mc, fmt.Errorf("create machine: %w", err)
		}
	}
	// Two runs may have checked the sum at the same moment: check it again
	// with ours running, and give the room back if it no longer fits.
	if ram, err := RAM(ctx, m.Client, m.Guard, 0); err != nil || !ram.Fits {
		detail := "re-checked after creating " + name + ": "
		if err != nil {
			detail += err.Error()
		} else {
			detail += ram.String() + " (another instance started meanwhile)"
		}
		return mc, errors.Join(&GuardrailError{Rule: "RAM cap", Detail: detail + "; the new machine is destroyed"}, mc.Destroy(ctx))
	}
	if err := mc.awaitReady(ctx, spec.BootTimeout, spec.SSHKeyVia); err != nil {
		return mc, err
	}
	m.logf("machine %s ready at %s in %s (host key %s)", name, mc.IP, time.Since(start).Round(time.Millisecond),
		ssh.FingerprintSHA256(mc.HostKey))
	return mc, nil
}

// instanceConfig is the new instance's config: its size, the harness's
// labels, the SSH key if the image is to install it, and a VM's secure boot.
func instanceConfig(spec Spec, l Labels, runID string, now time.Time, key ssh.PublicKey) (map[string]string, error) {
	cfg := map[string]string{
		"limits.memory": size.Format(spec.Memory),
		l.RunID():       runID,
		l.CreatedBy():   CreatedBy,
		l.ExpiresAt():   now.Add(spec.TTL).Format(time.RFC3339),
	}
	authorized := string(ssh.MarshalAuthorizedKey(key))
	switch spec.SSHKeyVia {
	case KeyViaFile, "":
	case KeyViaTemplate:
		cfg["user.ssh_authorized_keys"] = authorized
	case KeyViaCloudInit:
		cfg["cloud-init.user-data"] = "#cloud-config\ndisable_root: false\nusers:\n  - name: " + spec.SSHUser +
			"\n    ssh_authorized_keys:\n      - " + strings.TrimSpace(authorized) + "\n"
	default:
		return nil, fmt.Errorf("create machine: SSH key way %q (want file, template or cloud-init)", spec.SSHKeyVia)
	}
	if spec.InstanceType == incus.VirtualMachine && (spec.SecureBoot == "true" || spec.SecureBoot == "false") {
		cfg["security.secureboot"] = spec.SecureBoot
	}
	return cfg, nil
}

// awaitReady waits for the stages a machine passes through — an IPv4
// address on its own NIC; the SSH host key, read through Incus (the
// out-of-band channel, which for a VM works only once its agent answers:
// until then Incus says "VM agent isn't currently running" and we wait);
// the run's SSH key pushed through the Incus file API (KeyViaFile); SSH
// answering with the pinned host key — each error naming its stage.
func (mc *Machine) awaitReady(ctx context.Context, timeout time.Duration, keyVia string) error {
	deadline := time.Now().Add(timeout)
	c := mc.mgr.Client
	err := wait.Eventually(ctx, "an IPv4 address on "+mc.Name, time.Until(deadline), func(bool) error {
		st, err := c.State(ctx, mc.Project, mc.Name)
		if errors.Is(err, incus.ErrNotFound) {
			return wait.Stop(err)
		}
		if err != nil {
			return err
		}
		if st.Status != "Running" {
			return fmt.Errorf("status %s", st.Status)
		}
		in, err := mc.Verify(ctx)
		if err != nil {
			return wait.Stop(err)
		}
		macs := in.NICMACs()
		if len(macs) == 0 {
			return wait.Stop(errors.New("Incus reports no MAC for its NIC (no device hwaddr, no volatile.<nic>.hwaddr): its address cannot be told from another bridge's"))
		}
		if mc.IP = st.IPv4(macs...); mc.IP == "" {
			return errors.New("no global IPv4 address on its NIC yet")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("boot stage: %w", err)
	}
	err = wait.Eventually(ctx, "the SSH host key of "+mc.Name+" (via Incus exec)", time.Until(deadline), func(bool) error {
		k, err := mc.readHostKey(ctx)
		if err != nil {
			return err
		}
		mc.HostKey = k
		return nil
	})
	if err != nil {
		return fmt.Errorf("host key stage: %w", err)
	}
	if keyVia == KeyViaFile || keyVia == "" {
		err = wait.Eventually(ctx, "the run's SSH key on "+mc.Name+" (via the Incus file API)", time.Until(deadline), func(bool) error {
			return mc.pushAuthorizedKey(ctx)
		})
		if err != nil {
			return fmt.Errorf("SSH key stage: %w", err)
		}
	}
	err = wait.Eventually(ctx, "SSH on "+mc.Name+" ("+mc.sshAddr()+")", time.Until(deadline), func(bool) error {
		cl, err := mc.SSH(ctx)
		if err != nil {
			return err
		}
		defer cl.Close()
		_, err = cl.Run(ctx, "true", bounds.Command)
		return err
	})
	if err != nil {
		return fmt.Errorf("SSH stage: %w", err)
	}
	return nil
}

// readHostKey reads the machine's SSH host key through Incus: the channel
// that does not depend on the network path the key is meant to protect.
func (mc *Machine) readHostKey(ctx context.Context) (ssh.PublicKey, error) {
	b, err := mc.cat(ctx, "/etc/ssh/ssh_host_ed25519_key.pub")
	if err != nil {
		return nil, err
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse host key: %w", err)
	}
	return k, nil
}

// cat reads a file through Incus exec (the out-of-band channel).
func (mc *Machine) cat(ctx context.Context, path string) ([]byte, error) {
	res, err := mc.Exec(ctx, []string{"cat", path})
	if err != nil {
		return nil, stopIfRefused(err)
	}
	if res.ExitCode != 0 {
		return nil, fmt.Errorf("cat %s: exit %d: %s", path, res.ExitCode, mc.mgr.Redact.Redact(bounded(res.Stderr, 512)))
	}
	return res.Stdout, nil
}

// bootMark tells one boot of the machine from the next: the kernel's boot
// id (new at every boot of a VM) and PID 1's start time (a container shares
// its host's kernel and boot id; only its init is new).
func (mc *Machine) bootMark(ctx context.Context) (string, error) {
	id, err := mc.cat(ctx, "/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}
	stat, err := mc.cat(ctx, "/proc/1/stat")
	if err != nil {
		return "", err
	}
	// "1 (init) S 0 …": the start time is field 22, the 20th after the name.
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(f) < 20 {
		return "", fmt.Errorf("/proc/1/stat: %q is not a process's stat line", bounded(stat, 80))
	}
	return strings.TrimSpace(string(id)) + " pid1-start " + f[19], nil
}

// bounded is at most n bytes of b, trimmed, for a message.
func bounded(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.TrimSpace(string(b))
}

// pushAuthorizedKey writes the run's public key as root's only authorized
// key, through Incus (after checking ownership): /root/.ssh 0700, the file
// 0600, both root's. incusd applies a push's mode and owner only when it
// creates the file (cmd/incusd/instance_file.go, fileSFTPPost), so a file the
// image already has is removed first, and both are read back: sshd's
// StrictModes refuses keys in a directory or file others may write.
func (mc *Machine) pushAuthorizedKey(ctx context.Context) error {
	const dir, keys = "/root/.ssh", "/root/.ssh/authorized_keys"
	if err := mc.PushFile(ctx, incus.FileSpec{Path: dir, Mode: 0o700, Dir: true}); err != nil {
		return stopIfRefused(err)
	}
	if err := mc.deleteFile(ctx, keys); err != nil {
		return stopIfRefused(err)
	}
	if err := mc.PushFile(ctx, incus.FileSpec{Path: keys, Mode: 0o600, Data: ssh.MarshalAuthorizedKey(mc.Signer.PublicKey())}); err != nil {
		return stopIfRefused(err)
	}
	for _, p := range []string{dir, keys} {
		fi, err := mc.mgr.Client.StatFile(ctx, mc.Project, mc.Name, p)
		if err != nil {
			return err
		}
		if fi.UID != 0 || fi.Mode&0o022 != 0 {
			return wait.Stop(fmt.Errorf("%s on %s is mode %04o, uid %d (the image's own; Incus does not change an existing one): "+
				"sshd refuses a key others may write — fix the image", p, mc.Name, fi.Mode, fi.UID))
		}
	}
	return nil
}

// stopIfRefused ends a wait at once on a refusal to touch the instance
// (it will not become ours by waiting); other errors are retried.
func stopIfRefused(err error) error {
	var refused *OwnershipError
	if errors.As(err, &refused) {
		return wait.Stop(err)
	}
	return err
}

// deleteFile removes a file on the machine through Incus, after checking ownership.
func (mc *Machine) deleteFile(ctx context.Context, path string) error {
	if _, err := mc.Verify(ctx); err != nil {
		return fmt.Errorf("delete %s on %s: %w", path, mc.Name, err)
	}
	return mc.mgr.Client.DeleteFile(ctx, mc.Project, mc.Name, path)
}

func (mc *Machine) sshAddr() string {
	port := 22
	if mc.mgr != nil && mc.mgr.SSHPort != 0 {
		port = mc.mgr.SSHPort
	}
	return net.JoinHostPort(mc.IP, strconv.Itoa(port))
}

// SSH opens a connection that accepts only the pinned host key.
func (mc *Machine) SSH(ctx context.Context) (*remote.Client, error) {
	return remote.Dial(ctx, remote.Config{Addr: mc.sshAddr(), User: mc.User, Signer: mc.Signer,
		HostKey: mc.HostKey, Redact: mc.mgr.Redact, Log: mc.mgr.Log})
}

// Destroy stops and deletes the machine, checking before each change that it
// is still ours, then proves it is gone.
func (mc *Machine) Destroy(ctx context.Context) error {
	return destroyChecked(ctx, mc.mgr.Client, mc.Project, mc.Name, mc.Verify, mc.mgr.logf)
}

// DestroyClaimed destroys the instance of a claim (the guardian's job, from
// another process): only if it is in an allowed project and carries the
// harness labels, the claim's run id and, when known, its uuid. An absent
// instance is fine; any other is refused and left alone.
func DestroyClaimed(ctx context.Context, c *incus.Client, g config.Guardrails, l Labels, cl Claim, logf func(string, ...any)) error {
	return destroyChecked(ctx, c, cl.Project, cl.Name, func(ctx context.Context) (*incus.Instance, error) {
		return VerifyOwned(ctx, c, g, l, cl)
	}, logf)
}

// Reuse takes over a machine an earlier run kept (SKIP_teardown), after
// checking it as strictly as one of our own: allowed project, the harness
// labels with the kept run's id, the recorded uuid, and the SSH host key read
// again out of band. Its address is read from Incus, not from the state file.
// A machine that fails is left alone. A reused machine is adopted, not created.
func (m *Manager) Reuse(ctx context.Context, kept *Machine) (*Machine, error) {
	if kept.UUID == "" {
		return nil, &OwnershipError{Instance: kept.Project + "/" + kept.Name, Why: "the state file records no uuid"}
	}
	kept.mgr = m
	in, err := kept.Verify(ctx)
	if err != nil {
		return nil, err
	}
	st, err := m.Client.State(ctx, kept.Project, kept.Name)
	if err != nil {
		return nil, err
	}
	if st.Status != "Running" {
		return nil, fmt.Errorf("reuse %s/%s: status %s, not Running", kept.Project, kept.Name, st.Status)
	}
	// Identity before address: the host key, read again out of band.
	hk, err := kept.readHostKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("reuse %s/%s: read the host key again: %w", kept.Project, kept.Name, err)
	}
	if kept.HostKey == nil || !bytes.Equal(hk.Marshal(), kept.HostKey.Marshal()) {
		return nil, &OwnershipError{Instance: kept.Project + "/" + kept.Name,
			Why: "its SSH host key " + ssh.FingerprintSHA256(hk) + " is not the one the state file pinned"}
	}
	if kept.IP = st.IPv4(in.NICMACs()...); kept.IP == "" {
		return nil, fmt.Errorf("reuse %s/%s: Incus reports no IPv4 address", kept.Project, kept.Name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.adopted = append(m.adopted, kept)
	return kept, nil
}

// DestroyAll destroys every machine this manager created or adopted,
// collecting every failure.
func (m *Manager) DestroyAll(ctx context.Context) error {
	var errs []error
	for _, mc := range append(m.Created(), m.Adopted()...) {
		errs = append(errs, mc.Destroy(ctx))
	}
	return errors.Join(errs...)
}
