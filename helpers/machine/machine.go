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
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/remote"
	"github.com/cc-ci/acceptance/helpers/size"
)

// CreatedBy is the value of the created-by label on every harness instance.
const CreatedBy = "cc-ci-acceptance"

// Labels are the user.* config keys the harness writes, under one prefix.
type Labels struct{ Prefix string }

func (l Labels) RunID() string     { return "user." + l.Prefix + ".run-id" }
func (l Labels) CreatedBy() string { return "user." + l.Prefix + ".created-by" }
func (l Labels) ExpiresAt() string { return "user." + l.Prefix + ".expires-at" }

// Marked reports whether in carries the harness's created-by label.
func (l Labels) Marked(in *incus.Instance) bool { return in.Config[l.CreatedBy()] == CreatedBy }

// Expiry is in's expires-at label read as a time; false when it is not
// RFC 3339 (the label is the instance's own word: name it, never trust it).
func (l Labels) Expiry(in *incus.Instance) (time.Time, bool) {
	exp, err := time.Parse(time.RFC3339, in.Config[l.ExpiresAt()])
	return exp, err == nil
}

// Kept marks a machine a run kept on purpose (SKIP_teardown): the lab's
// sweep of dead runs' instances leaves it for SKIP_provision.
func (l Labels) Kept() string { return "user." + l.Prefix + ".kept" }

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
	// SSHPort is where machines' sshd listens (0: 22; CCCI_SSH_PORT). Tests
	// against a fake Incus point it at its SSH server.
	SSHPort int
	// Watch, if set, names the host side of each NIC and is told the names
	// between creation and start (the egress observer); an error aborts
	// the creation.
	Watch Watcher

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
	Ready     time.Time // when it first answered at IP (its address was its own from then on)
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

// PushFile writes a file on the machine through Incus, after checking ownership.
func (mc *Machine) PushFile(ctx context.Context, f incus.FileSpec) error {
	if _, err := mc.Verify(ctx); err != nil {
		return fmt.Errorf("push %s to %s: %w", f.Path, mc.Name, err)
	}
	return mc.mgr.Redact.RedactError(mc.mgr.Client.PushFile(ctx, mc.Project, mc.Name, f))
}

// MarkKept labels the machine as kept by its run (SKIP_teardown), after
// checking ownership: it is no orphan of a run that died.
func (mc *Machine) MarkKept(ctx context.Context) error {
	if _, err := mc.Verify(ctx); err != nil {
		return fmt.Errorf("mark %s kept: %w", mc.Name, err)
	}
	return mc.mgr.Client.SetConfig(ctx, mc.Project, mc.Name, mc.mgr.Labels.Kept(), "true")
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
	var devices map[string]map[string]string
	var hostNICs []string
	if m.Watch != nil {
		if devices, hostNICs, err = hostNamedNICs(ctx, m.Client, spec.Project, name); err != nil {
			return mc, fmt.Errorf("create machine: %w", err)
		}
	}
	start := time.Now()
	m.logf("creating %s/%s from image %q (%s, %s)", spec.Project, name, spec.Image, spec.InstanceType, size.Format(spec.Memory))
	// Create and start are not abandoned half way when ctx is cancelled: Incus
	// would finish them without us and a teardown racing them could miss the
	// instance. They run to completion (bounded), then ctx is checked.
	settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), spec.BootTimeout)
	defer cancel()
	if err := m.Client.CreateInstance(settle, incus.InstanceSpec{Name: name, Project: spec.Project, Type: spec.InstanceType,
		ImageAlias: spec.Image, Config: cfg, Devices: devices}); err != nil {
		return mc, fmt.Errorf("create machine: %w", err)
	}
	if m.Watch != nil {
		if err := m.Watch(ctx, mc, hostNICs); err != nil {
			return mc, fmt.Errorf("create machine %s: watch its NICs: %w", name, err)
		}
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
	if m.Watch != nil {
		if err := checkHostNICs(in, hostNICs); err != nil {
			return mc, fmt.Errorf("create machine: %w", err)
		}
	}
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
	mc.Ready = time.Now()
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
