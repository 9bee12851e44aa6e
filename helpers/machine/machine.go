// Package machine creates, reaches and destroys throwaway machines on Incus:
// run-unique names, harness labels, guardrails checked before creation, an SSH
// host key pinned out of band, destruction that proves absence, and a reaper
// that only ever removes expired instances carrying the harness's label.
package machine

import (
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
	"github.com/cc-ci/acceptance/helpers/wait"
)

// CreatedBy is the value of the created-by label on every harness instance.
const CreatedBy = "cc-ci-acceptance"

// Labels are the user.* config keys the harness writes, under one prefix.
type Labels struct{ Prefix string }

func (l Labels) RunID() string     { return "user." + l.Prefix + ".run-id" }
func (l Labels) CreatedBy() string { return "user." + l.Prefix + ".created-by" }
func (l Labels) ExpiresAt() string { return "user." + l.Prefix + ".expires-at" }

// Spec is what to create.
type Spec struct {
	Project     string
	Image       string // alias
	Type        string // incus.Container or incus.VirtualMachine
	Memory      int64  // bytes → limits.memory
	TTL         time.Duration
	BootTimeout time.Duration // create → SSH ready
	SSHUser     string
}

// Manager creates machines for one test run and remembers them for teardown.
type Manager struct {
	Client *incus.Client
	Guard  Guardrails
	Labels Labels
	RunID  string
	Redact *redact.Redactor
	Log    func(format string, args ...any)
	// BeforeCreate, if set, is told each instance before Incus is asked for it
	// (the run's guardian tracks it); an error aborts the creation.
	BeforeCreate func(project, name string) error

	mu      sync.Mutex
	created []*Machine // every machine this run asked for, even half-created ones
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

	mgr *Manager
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

// Created returns the machines this manager asked Incus for.
func (m *Manager) Created() []*Machine {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Machine(nil), m.created...)
}

// Create checks the guardrails, creates and starts a labelled instance, and
// waits until it has an address and answers SSH with its pinned host key.
// On any error after the instance was requested, the caller's teardown
// (DestroyAll) still knows about it.
func (m *Manager) Create(ctx context.Context, spec Spec) (*Machine, error) {
	if err := m.Guard.checkProject(spec.Project); err != nil {
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
		return nil, err
	}
	m.logf("RAM guardrail: %s", ram)
	if !ram.Fits {
		return nil, &GuardrailError{Rule: "RAM cap", Detail: ram.String()}
	}

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	name := "ccci-" + m.RunID
	if n > 0 {
		name = fmt.Sprintf("%s-%d", name, n)
	}
	mc := &Machine{Name: name, Project: spec.Project, Type: spec.Type, Image: spec.Image, RunID: m.RunID,
		Signer: signer, Key: priv, User: spec.SSHUser, Memory: spec.Memory, mgr: m}
	if m.BeforeCreate != nil {
		if err := m.BeforeCreate(spec.Project, name); err != nil {
			return nil, fmt.Errorf("create machine: %w", err)
		}
	}
	m.mu.Lock()
	m.created = append(m.created, mc)
	m.mu.Unlock()

	cfg := map[string]string{
		"limits.memory":            config.FormatSize(spec.Memory),
		m.Labels.RunID():           m.RunID,
		m.Labels.CreatedBy():       CreatedBy,
		m.Labels.ExpiresAt():       now.Add(spec.TTL).Format(time.RFC3339),
		"user.ssh_authorized_keys": string(ssh.MarshalAuthorizedKey(signer.PublicKey())),
	}
	start := time.Now()
	m.logf("creating %s/%s from image %q (%s, %s)", spec.Project, name, spec.Image, spec.Type, config.FormatSize(spec.Memory))
	// Create and start are not abandoned half way when ctx is cancelled: Incus
	// would finish them without us and a teardown racing them could miss the
	// instance. They run to completion (bounded), then ctx is checked.
	settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), spec.BootTimeout)
	defer cancel()
	if err := m.Client.CreateInstance(settle, incus.InstanceSpec{Name: name, Project: spec.Project, Type: spec.Type,
		ImageAlias: spec.Image, Config: cfg}); err != nil {
		return mc, fmt.Errorf("create machine: %w", err)
	}
	if err := m.Client.SetState(settle, spec.Project, name, "start", false); err != nil {
		return mc, fmt.Errorf("create machine: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return mc, fmt.Errorf("create machine %s: %w", name, err)
	}
	in, err := m.Client.Instance(ctx, spec.Project, name)
	if err != nil {
		return mc, fmt.Errorf("create machine: %w", err)
	}
	mc.CreatedAt = in.CreatedAt
	if err := mc.awaitReady(ctx, spec.BootTimeout); err != nil {
		return mc, err
	}
	m.logf("machine %s ready at %s in %s (host key %s)", name, mc.IP, time.Since(start).Round(time.Millisecond),
		ssh.FingerprintSHA256(mc.HostKey))
	return mc, nil
}

// awaitReady waits for an IPv4 address, reads the SSH host key through Incus
// (the out-of-band channel), then waits until SSH answers with that key.
func (mc *Machine) awaitReady(ctx context.Context, timeout time.Duration) error {
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
		if mc.IP = st.IPv4(); mc.IP == "" {
			return errors.New("no global IPv4 address yet")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("boot stage: %w", err)
	}
	err = wait.Eventually(ctx, "the SSH host key of "+mc.Name+" (via Incus exec)", time.Until(deadline), func(bool) error {
		res, err := c.Exec(ctx, mc.Project, mc.Name, []string{"cat", "/etc/ssh/ssh_host_ed25519_key.pub"}, nil)
		if err != nil {
			return err
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("exit %d: %s", res.ExitCode, strings.TrimSpace(string(res.Stderr)))
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(res.Stdout)
		if err != nil {
			return fmt.Errorf("parse host key: %w", err)
		}
		mc.HostKey = k
		return nil
	})
	if err != nil {
		return fmt.Errorf("host key stage: %w", err)
	}
	err = wait.Eventually(ctx, "SSH on "+mc.Name+" ("+mc.IP+":22)", time.Until(deadline), func(bool) error {
		cl, err := mc.SSH(ctx)
		if err != nil {
			return err
		}
		defer cl.Close()
		_, err = cl.Run(ctx, "true", 10*time.Second)
		return err
	})
	if err != nil {
		return fmt.Errorf("SSH stage: %w", err)
	}
	return nil
}

// SSH opens a connection that accepts only the pinned host key.
func (mc *Machine) SSH(ctx context.Context) (*remote.Client, error) {
	return remote.Dial(ctx, remote.Config{Addr: mc.IP + ":22", User: mc.User, Signer: mc.Signer,
		HostKey: mc.HostKey, Redact: mc.mgr.Redact, Log: mc.mgr.Log})
}

// Destroy stops and deletes the instance, then proves it is gone.
func (mc *Machine) Destroy(ctx context.Context) error {
	return destroy(ctx, mc.mgr.Client, mc.Project, mc.Name, mc.mgr.logf)
}

func destroy(ctx context.Context, c *incus.Client, project, name string, logf func(string, ...any)) error {
	start := time.Now()
	// Retried: an instance still being created or started refuses to be
	// deleted ("busy") for a moment; only "not found" ends it.
	err := wait.Eventually(ctx, "deletion of "+project+"/"+name, 2*time.Minute, func(lastTry bool) error {
		_, err := c.Instance(ctx, project, name)
		if errors.Is(err, incus.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := c.SetState(ctx, project, name, "stop", true); err != nil && !errors.Is(err, incus.ErrNotFound) &&
			!strings.Contains(err.Error(), "already stopped") {
			return err
		}
		if err := c.DeleteInstance(ctx, project, name); err != nil && !errors.Is(err, incus.ErrNotFound) {
			return err
		}
		return errors.New("instance still answers after delete")
	})
	if err != nil {
		return fmt.Errorf("destroy %s/%s: %w: there may be a dangling instance", project, name, err)
	}
	logf("destroyed %s/%s in %s (API: not found)", project, name, time.Since(start).Round(time.Millisecond))
	return nil
}

// DestroyLabelled destroys project/name only if it carries the harness's
// created-by label; an absent instance is fine, an unlabelled one is refused.
func DestroyLabelled(ctx context.Context, c *incus.Client, l Labels, project, name string, logf func(string, ...any)) error {
	in, err := c.Instance(ctx, project, name)
	if errors.Is(err, incus.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("destroy %s/%s: %w", project, name, err)
	}
	if in.Config[l.CreatedBy()] != CreatedBy {
		return fmt.Errorf("destroy %s/%s: refused: it does not carry %s=%s", project, name, l.CreatedBy(), CreatedBy)
	}
	return destroy(ctx, c, project, name, logf)
}

// Adopt makes the manager responsible for a machine created by an earlier run
// (SKIP_provision): it will be destroyed with the others.
func (m *Manager) Adopt(mc *Machine) {
	mc.mgr = m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.created = append(m.created, mc)
}

// DestroyAll destroys every machine this manager created, collecting every failure.
func (m *Manager) DestroyAll(ctx context.Context) error {
	var errs []error
	for _, mc := range m.Created() {
		errs = append(errs, mc.Destroy(ctx))
	}
	return errors.Join(errs...)
}
