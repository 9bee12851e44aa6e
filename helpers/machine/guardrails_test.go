package machine_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/incus/incustest"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/machine"
)

// The guardrails and the reaper decide what the harness may create and
// delete on a shared host, so each rule is tested twice with one body: on
// incustest (always: make unit) and on the lab's real incusd (make test).

// anIncus is an Incus a guardrail test runs against.
type anIncus struct {
	client *incus.Client
	mgr    func() *machine.Manager // a fresh run's manager
	spec   machine.Spec            // a small machine in the allowed project
	decoys string                  // a project outside the allow-list
	image  string                  // the image decoys start from
}

func onEachIncus(t *testing.T, test func(t *testing.T, in anIncus)) {
	t.Run("incustest", func(t *testing.T) {
		f, _ := newFake(t, incustest.Image{})
		f.Projects["elsewhere"] = true
		_, probe := fakeManager(t, f)
		test(t, anIncus{client: probe.Client, spec: spec(incus.Container, machine.KeyViaFile), decoys: "elsewhere", image: "incus-base",
			mgr: func() *machine.Manager { _, m := fakeManager(t, f); return m }})
	})
	t.Run("lab", func(t *testing.T) {
		c, cfg := labtest.Client(t, "https")
		s := machine.SpecFrom(cfg)
		s.Memory = 512 << 20
		test(t, anIncus{client: c, spec: s, decoys: labtest.DecoyProject(t, c), image: cfg.Machine.Image,
			mgr: func() *machine.Manager {
				return &machine.Manager{Client: c, Guard: cfg.Guardrails, Labels: machine.Labels{Prefix: cfg.Guardrails.LabelPrefix},
					RunID: machine.NewRunID(time.Now()), Log: t.Logf}
			}})
	})
}

func TestGuardrailRefusesProjectOutsideAllowList(t *testing.T) {
	onEachIncus(t, func(t *testing.T, in anIncus) {
		m := in.mgr()
		spec := in.spec
		spec.Project = "default"
		before := countAll(t, in.client)
		_, err := m.Create(context.Background(), spec)
		var ge *machine.GuardrailError
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, "project allow-list", ge.Rule)
		assert.Contains(t, err.Error(), `project "default" is not in the allow-list [`+in.spec.Project+`]`)
		assert.Equal(t, before, countAll(t, in.client), "nothing was created")
	})
}

// Over the RAM cap, creation is refused and the message shows the arithmetic.
func TestGuardrailRefusesOverRAMCap(t *testing.T) {
	onEachIncus(t, func(t *testing.T, in anIncus) {
		m := in.mgr()
		// A running decoy of 1GiB in another project counts towards the sum too,
		// as part of one sum: other tenants' instances are not named.
		decoy := startDecoy(t, in, in.decoys, "1GiB", nil)
		m.Guard.RAMCap = 4 << 30
		spec := in.spec
		spec.Memory = 4 << 30
		before := countAll(t, in.client)
		_, err := m.Create(context.Background(), spec)
		var ge *machine.GuardrailError
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, "RAM cap", ge.Rule)
		assert.Contains(t, err.Error(), "instance(s) in other projects")
		assert.NotContains(t, err.Error(), decoy, "another project's instance is not named")
		assert.Contains(t, err.Error(), "new 4GiB")
		assert.Contains(t, err.Error(), "> cap 4GiB")
		assert.Equal(t, before, countAll(t, in.client), "nothing was created")
	})
}

// A refusal must say which counted instances are harness machines and when
// they go, so that an operator sees whether waiting (or the reaper) frees
// the room. An instance's labels are its own words: a value that is not a
// time is not repeated.
func TestTheRAMSumSaysWhichInstancesAreHarnessMachinesAndWhenTheyGo(t *testing.T) {
	onEachIncus(t, func(t *testing.T, in anIncus) {
		m := in.mgr()
		l := m.Labels
		harness := func(expires string) map[string]string {
			return map[string]string{l.CreatedBy(): machine.CreatedBy, l.RunID(): "r-test", l.ExpiresAt(): expires}
		}
		expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		running := startDecoy(t, in, in.spec.Project, "256MiB", harness(expires.Format(time.RFC3339)))
		garbled := startDecoy(t, in, in.spec.Project, "256MiB", harness("soon; rm -rf /"))
		keptLabels := harness(expires.Format(time.RFC3339))
		keptLabels[l.Kept()] = "true"
		kept := startDecoy(t, in, in.spec.Project, "256MiB", keptLabels)
		plain := startDecoy(t, in, in.spec.Project, "256MiB", nil)

		r, err := machine.RAM(context.Background(), in.client, m.Guard, 0)
		require.NoError(t, err)
		sum := r.String()
		assert.Contains(t, sum, running+" 256MiB (a harness machine, expires-at "+expires.Format(time.RFC3339)+")")
		assert.Contains(t, sum, garbled+" 256MiB (a harness machine whose expires-at does not parse)")
		assert.NotContains(t, sum, "rm -rf", "a label that is not a time is not repeated")
		assert.Contains(t, sum, kept+" 256MiB (a harness machine kept on purpose)")
		assert.Regexp(t, regexp.QuoteMeta(plain)+` 256MiB( \+| =)`, sum, "an instance without the harness label gets no note")
	})
}

// Two runs may check the RAM sum at the same moment. The sum is checked again
// once our machine exists; if another instance started meanwhile and the
// total no longer fits, our own machine is destroyed and creation fails.
func TestRAMIsCheckedAgainAfterCreating(t *testing.T) {
	onEachIncus(t, func(t *testing.T, in anIncus) {
		m := in.mgr()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		before, err := machine.RAM(ctx, in.client, m.Guard, 0)
		require.NoError(t, err)
		// Room for exactly our machine, then a concurrent 1GiB instance starts.
		m.Guard.RAMCap = before.Total + in.spec.Memory
		m.Tracker = &concurrentStart{t: t, in: in}
		mc, err := m.Create(ctx, in.spec)
		var ge *machine.GuardrailError
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, "RAM cap", ge.Rule)
		assert.Contains(t, err.Error(), "re-checked after creating "+mc.Name)
		assert.Contains(t, err.Error(), "the new machine is destroyed")
		_, err = in.client.Instance(ctx, mc.Project, mc.Name)
		assert.ErrorIs(t, err, incus.ErrNotFound, "our machine was given back")
	})
}

// concurrentStart stands in for another run: when our machine's uuid is
// pinned (after creation, before the re-check), it starts an instance.
type concurrentStart struct {
	t  *testing.T
	in anIncus
}

func (s *concurrentStart) Track(string, string) error { return nil }
func (s *concurrentStart) Pin(string, string, string) error {
	startDecoy(s.t, s.in, s.in.decoys, "1GiB", nil)
	return nil
}

// One machine per run: the second is refused before anything is asked of Incus.
func TestGuardrailMachinesPerRun(t *testing.T) {
	onEachIncus(t, func(t *testing.T, in anIncus) {
		m := in.mgr()
		m.Guard.MaxMachines = 1
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		t.Cleanup(func() { _ = m.DestroyAll(context.Background()) })
		_, err := m.Create(ctx, in.spec)
		require.NoError(t, err)
		before := countAll(t, in.client)
		_, err = m.Create(ctx, in.spec)
		var ge *machine.GuardrailError
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, "machines per run", ge.Rule)
		assert.Contains(t, err.Error(), "already created 1 machine(s); the limit is 1")
		assert.Equal(t, before, countAll(t, in.client), "nothing was created")
	})
}

// The reaper removes an expired labelled instance, keeps a live one of a
// concurrent run, and never touches an unlabelled instance or another project.
func TestReaperOnlyTakesExpiredLabelledInstances(t *testing.T) {
	onEachIncus(t, func(t *testing.T, in anIncus) {
		m := in.mgr()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		l := m.Labels
		labelled := func(expires time.Time) map[string]string {
			return map[string]string{l.CreatedBy(): machine.CreatedBy, l.RunID(): "r-test", l.ExpiresAt(): expires.UTC().Format(time.RFC3339)}
		}
		past := time.Now().Add(-time.Hour)
		expired := startDecoy(t, in, in.spec.Project, "256MiB", labelled(past))
		live := startDecoy(t, in, in.spec.Project, "256MiB", labelled(time.Now().Add(time.Hour)))
		unlabelled := startDecoy(t, in, in.spec.Project, "256MiB", map[string]string{l.ExpiresAt(): past.UTC().Format(time.RFC3339)})
		otherProject := startDecoy(t, in, in.decoys, "256MiB", labelled(past))

		res, err := machine.Reap(ctx, in.client, m.Guard, l, time.Now(), t.Logf)
		require.NoError(t, err)
		assert.Contains(t, res.Deleted, expired)
		assert.Contains(t, res.Kept, live)
		for _, survivor := range []string{live, unlabelled, otherProject} {
			project, name, _ := strings.Cut(survivor, "/")
			_, err := in.client.Instance(ctx, project, name)
			assert.NoError(t, err, "%s must survive the reaper", survivor)
		}
		project, name, _ := strings.Cut(expired, "/")
		_, err = in.client.Instance(ctx, project, name)
		assert.ErrorIs(t, err, incus.ErrNotFound)
	})
}

// startDecoy starts a small instance that the test removes itself; it returns project/name.
func startDecoy(t *testing.T, in anIncus, project, memory string, cfg map[string]string) string {
	t.Helper()
	return project + "/" + labtest.Decoy{Project: project, Image: in.image, Memory: memory, Prefix: "decoy", Config: cfg}.Start(t, in.client)
}

func countAll(t *testing.T, c *incus.Client) int {
	ins, err := c.Instances(context.Background(), "")
	require.NoError(t, err)
	return len(ins)
}
