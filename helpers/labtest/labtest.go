// Package labtest gives integration tests the lab's Incus client, or skips
// them when no lab is configured — unless CCCI_REQUIRE_LAB=1 (as .ci/run
// sets), when a missing lab is a failure, not a skip.
package labtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/labclaim"
	"github.com/cc-ci/acceptance/helpers/wait"
)

// Required reports whether the lab must be there (CCCI_REQUIRE_LAB=1).
func Required() bool { return os.Getenv("CCCI_REQUIRE_LAB") == "1" }

// Unavailable skips or fails the test, as Required decides.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if Required() {
		t.Fatalf("lab required (CCCI_REQUIRE_LAB=1) but unavailable: %s", why)
	}
	t.Skipf("no lab (%s); run `make lab-up` or set CCCI_REQUIRE_LAB=1 to require it", why)
}

// Config loads the harness configuration or skips/fails.
func Config(t testing.TB) *config.Config {
	t.Helper()
	c, err := config.Load()
	if err != nil {
		Unavailable(t, err.Error())
	}
	return c
}

// Client returns a trusted client over one transport ("https" or "unix").
func Client(t testing.TB, transport string) (*incus.Client, *config.Config) {
	t.Helper()
	c := Config(t)
	if transport == "https" && c.Incus.URL == "" {
		Unavailable(t, "CCCI_INCUS_URL is not set")
	}
	cl, err := incus.New(c.Incus.Config(transport))
	if err != nil {
		Unavailable(t, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.Server(ctx); err != nil {
		Unavailable(t, err.Error())
	}
	// These tests create decoys and reap instances: only ever on the lab.
	if err := labclaim.Require(ctx, cl); err != nil {
		Unavailable(t, err.Error())
	}
	return cl, c
}

// GoodTarget is the lab's configuration for a test that runs the whole
// acceptance suite against the lab's targets: it skips unless
// CCCI_ACCEPTANCE=1 (make test sets it), and needs the lab's good target.
func GoodTarget(t testing.TB) *config.Config {
	t.Helper()
	if os.Getenv("CCCI_ACCEPTANCE") != "1" {
		t.Skip("runs the acceptance suite: set CCCI_ACCEPTANCE=1 (make test does)")
	}
	c := Config(t)
	if !c.HasTarget() || !strings.Contains(c.Target.BaseRepoURL, "/good/") {
		Unavailable(t, "the lab's good target is not configured (make lab-up)")
	}
	return c
}

// Target is the URL of one of the lab's targets (fixtures/README.md): a
// URL of the good target with its name replaced.
func Target(goodURL, name string) string { return strings.Replace(goodURL, "/good/", "/"+name+"/", 1) }

// ShortWaits are the settings of a lab run whose subject is not how long
// it waits: a target that hangs fails in bounded time, and a good one is
// not held for the default 30 s. What the hold proves is proven where it is
// the subject: ./acceptance runs at the defaults, and the defect matrix's
// proxy-dies-during-the-run row sets a hold its defect outlasts.
var ShortWaits = []string{"CCCI_STEP_TIMEOUT=40s", "CCCI_CONVERGE_TIMEOUT=15s", "CCCI_SETTLE=3s", "CCCI_HOLD=3s", "CCCI_TLS_READY=10s"}

// Tail is the end of a long output, for a failure message.
func Tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

// Decoy is a small container a test starts and removes itself.
type Decoy struct {
	Project, Image string
	Memory         string            // limits.memory ("256MiB" if empty)
	Prefix         string            // the name is prefix-<n>
	Config         map[string]string // labels and more
}

// Start creates and starts d on c (the lab's incusd or incustest) and
// removes it when the test ends; it returns its name.
func (d Decoy) Start(t testing.TB, c *incus.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := fmt.Sprintf("%s-%d", d.Prefix, time.Now().UnixNano()%1e9)
	conf := map[string]string{"limits.memory": cmp.Or(d.Memory, "256MiB")}
	maps.Copy(conf, d.Config)
	if err := c.CreateInstance(ctx, incus.InstanceSpec{Name: name, Project: d.Project, Type: incus.Container,
		ImageAlias: d.Image, Config: conf}); err != nil {
		t.Fatalf("create %s/%s: %v", d.Project, name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = c.SetState(ctx, d.Project, name, "stop", true)
		if err := c.DeleteInstance(ctx, d.Project, name); err != nil && !errors.Is(err, incus.ErrNotFound) {
			t.Errorf("remove %s/%s: %v", d.Project, name, err)
		}
	})
	if err := c.SetState(ctx, d.Project, name, "start", false); err != nil {
		t.Fatalf("start %s/%s: %v", d.Project, name, err)
	}
	return name
}

// DecoyProject is the lab's project outside the allow-list, where the
// harness's own tests put instances that must survive it: the project of
// the lab's decoy, the instance labelled user.ccci-lab.role=decoy
// (lab/steps/targets.sh). No setting names it: the lab says where it is.
func DecoyProject(t testing.TB, c *incus.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all, err := c.Instances(ctx, "")
	if err != nil {
		t.Fatalf("find the lab's decoy: %v", err)
	}
	for _, in := range all {
		if in.Config["user.ccci-lab.role"] == "decoy" {
			return in.Project
		}
	}
	t.Fatal("the lab runs no instance labelled user.ccci-lab.role=decoy: run `make lab-up`")
	return ""
}

// StartedInstance starts a Decoy (256MiB) from the lab's image in the
// configured project, named prefix-<n>, with extra config (labels), and
// waits until it has booted far enough to have its SSH host key.
func StartedInstance(t testing.TB, c *incus.Client, cfg *config.Config, prefix string, extra map[string]string) string {
	t.Helper()
	ctx := context.Background()
	name := Decoy{Project: cfg.Machine.Project, Image: cfg.Machine.Image, Prefix: prefix, Config: extra}.Start(t, c)
	err := wait.Eventually(ctx, "the host key of "+name, time.Minute, func(bool) error {
		res, err := c.Exec(ctx, cfg.Machine.Project, name, []string{"test", "-s", "/etc/ssh/ssh_host_ed25519_key.pub"}, nil)
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("exit %d", res.ExitCode)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return name
}
