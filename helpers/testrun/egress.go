package testrun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/egress"
	"github.com/cc-ci/acceptance/helpers/judge"
	"github.com/cc-ci/acceptance/helpers/machine"
)

// Contact is one destination the machine sent to, and when (a step of the
// install, or a phase around it).
type Contact = egress.Contact

// egressState is what the run saw the machine send, from the moment its
// NICs existed (CCCI_EGRESS=nft) until its teardown.
type egressState struct {
	mu       sync.Mutex
	obs      trafficSource
	err      error // why it could not be observed (then nothing it sent is known)
	contacts []Contact
	judged   int  // contacts[:judged] were judged by the sentence
	sentence bool // the sentence judged (a run of -run TestC4 judges no traffic)
}

// trafficSource is what the machine sent since the last look (an
// egress.Observer; a test's script).
type trafficSource interface {
	New(ctx context.Context) ([]egress.Dest, error)
}

// watchNICs is the machine manager's Watcher: the run's observer, attached
// to the NICs' host sides before the machine starts.
func (r *Run) watchNICs(ctx context.Context, _ *machine.Machine, hostNICs []string) error {
	obs, err := egress.Start(ctx, hostNICs, r.ID)
	if err != nil {
		return err
	}
	r.traffic.mu.Lock()
	r.traffic.obs = obs
	r.traffic.mu.Unlock()
	r.local.add(func() { _ = obs.Close() })
	return nil
}

// watchKept attaches the observer to a kept machine's NICs (SKIP_provision):
// from now, not from its start — what it sent before is another run's.
func (r *Run) watchKept(mc *machine.Machine) {
	if r.Config.Expect.Egress != "nft" {
		return
	}
	in, err := mc.Verify(r.ctx)
	var devs []string
	if err == nil {
		devs, err = in.NICDevices()
	}
	if err == nil {
		err = r.watchNICs(r.ctx, mc, devs)
	}
	if err != nil {
		r.traffic.mu.Lock()
		r.traffic.err = err
		r.traffic.mu.Unlock()
	}
}

// sawUntil records what the machine sent since the last look as sent
// during step (or a phase). Without an observer it does nothing.
func (r *Run) sawUntil(ctx context.Context, step string) {
	r.traffic.mu.Lock()
	defer r.traffic.mu.Unlock()
	if r.traffic.obs == nil {
		return
	}
	fresh, err := r.traffic.obs.New(ctx)
	r.traffic.err = errors.Join(r.traffic.err, err)
	for _, d := range fresh {
		r.traffic.contacts = append(r.traffic.contacts, Contact{Step: step, Dest: d})
	}
}

// Egress is what the machine sent from its start until the settle window
// after the install (CCCI_SETTLE: a job the last block left behind has had
// that long), read then, and why it could not be observed (nil: it was).
// What it sends later is judged at its teardown (egressAtTeardown).
func (r *Run) Egress() ([]Contact, error) {
	inst := r.install.done
	if r.Config.Stages.ReuseInstall {
		return inst.Contacts, nil
	}
	if inst != nil && !inst.Ended.IsZero() {
		select {
		case <-time.After(time.Until(inst.Ended.Add(r.Config.Timeouts.Settle))):
		case <-r.ctx.Done():
		}
	}
	r.sawUntil(r.ctx, egress.AfterInstall)
	r.traffic.mu.Lock()
	defer r.traffic.mu.Unlock()
	r.traffic.judged, r.traffic.sentence = len(r.traffic.contacts), true
	if r.traffic.obs == nil && r.traffic.err == nil {
		return nil, fmt.Errorf("egress: nothing observed the machine's NICs (CCCI_EGRESS=nft, but no observer was attached)")
	}
	return append([]Contact(nil), r.traffic.contacts...), r.traffic.err
}

// egressAtTeardown is the last look, just before the machine is destroyed:
// what it sent after the sentence judged (a background job of the last
// block, a timer) is judged by the same rule, and fails the run. A run in
// which the sentence did not judge (-run TestC4) judges nothing here: C3
// owns the verdict.
func (r *Run) egressAtTeardown() error {
	if r.Config == nil || r.Config.Expect.Egress != "nft" || r.Config.Stages.ReuseInstall {
		return nil
	}
	r.traffic.mu.Lock()
	judged := r.traffic.sentence
	r.traffic.mu.Unlock()
	if !judged {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), bounds.Traffic)
	defer cancel()
	r.sawUntil(ctx, egress.AfterInstall)
	r.traffic.mu.Lock()
	late := append([]Contact(nil), r.traffic.contacts[r.traffic.judged:]...)
	r.traffic.mu.Unlock()
	if len(late) == 0 {
		return nil
	}
	allowed, err := r.allowedEgress(ctx)
	if err != nil {
		return err
	}
	var why []string
	for _, p := range judge.Egress(late, allowed) {
		why = append(why, p.String())
	}
	if len(why) == 0 {
		return nil
	}
	err = fmt.Errorf("after C3 judged the machine's traffic, before its teardown: %s", strings.Join(why, "; "))
	logf("FAIL: %v", err)
	r.Note("egress-at-teardown", "%v", err)
	return err
}

// allowedEgress is what the machine may reach: the two repos and CCCI_EGRESS_ALLOW.
func (r *Run) allowedEgress(ctx context.Context) (egress.Allowed, error) {
	return egress.AllowedFor(ctx, []string{r.Config.Target.BaseRepoURL, r.Config.Target.SecretsRepoURL}, r.Config.Expect.EgressAllow)
}

// AllowedEgress is allowedEgress for the sentence that judges it.
func (r *Run) AllowedEgress() (egress.Allowed, error) { return r.allowedEgress(r.ctx) }

// MachineAddresses are the addresses the run's machine holds, as Incus
// reports them (every interface but loopback), with the one the harness
// reaches it at: whom the git server's fetch log names for it. An address
// the machine gave itself and dropped before this look is not among them
// (docs/decisions.md).
func (r *Run) MachineAddresses(t testing.TB) []string {
	t.Helper()
	mc := r.Machine(t)
	addrs := []string{mc.IP}
	st, err := r.Incus.State(r.ctx, mc.Project, mc.Name)
	if err != nil {
		t.Fatalf("the machine's addresses: %v", err)
	}
	for name, n := range st.Network {
		if name == "lo" || n.Type == "loopback" {
			continue
		}
		for _, a := range n.Addresses {
			if !slices.Contains(addrs, a.Address) {
				addrs = append(addrs, a.Address)
			}
		}
	}
	return addrs
}

// tlsAddr is Installed.TLSAddr: CCCI_TLS_ADDR, else the machine's port
// 443. One that is another instance's address (the running reference, a
// decoy: what a gateway forwards to) fails the caller.
func (r *Run) tlsAddr(t testing.TB) string {
	t.Helper()
	mc := r.Machine(t)
	addr := r.Config.Target.TLSAddr
	if addr == "" {
		return net.JoinHostPort(mc.IP, "443")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("CCCI_TLS_ADDR %q: want host:port", addr)
	}
	for _, p := range r.Config.Guardrails.AllowedProjects {
		ins, err := r.Incus.Instances(r.ctx, p)
		if err != nil {
			t.Fatalf("CCCI_TLS_ADDR: list the instances of %s: %v", p, err)
		}
		for _, in := range ins {
			if in.Name == mc.Name && p == mc.Project {
				continue
			}
			st, err := r.Incus.State(r.ctx, p, in.Name)
			if err != nil {
				continue // stopped, or gone meanwhile: it answers nothing
			}
			for _, n := range st.Network {
				for _, a := range n.Addresses {
					if a.Address == host {
						t.Fatalf("CCCI_TLS_ADDR %s is the address of %s/%s, not of the throwaway %s: TLS judged there judges that instance", addr, p, in.Name, mc.Name)
					}
				}
			}
		}
	}
	return addr
}
