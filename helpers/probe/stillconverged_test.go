package probe

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/remote"
)

// machine answers the probes' commands as a systemd machine would, from
// the state the test sets: the one-method seam every probe runs through.
type machine struct {
	units map[string]string // unit name → its `systemctl show` block
	asked []string
}

func (m *machine) Run(_ context.Context, command string, _ time.Duration) (*remote.Result, error) {
	m.asked = append(m.asked, command)
	out := ""
	if strings.Contains(command, "systemctl show") {
		blocks := []string{}
		for _, name := range []string{"cc-ci-swarm.service", "cc-ci-proxy.service"} {
			if strings.Contains(command, name) {
				blocks = append(blocks, m.units[name])
			}
		}
		out = "@1764369010\n" + strings.Join(blocks, "\n\n") + "\n"
	}
	return &remote.Result{Command: command, Stdout: []byte(out)}, nil
}

func unit(name, typ, sub string, pid, restarts int) string {
	return fmt.Sprintf("Id=%s\nType=%s\nLoadState=loaded\nActiveState=active\nSubState=%s\nResult=success\nExecMainStatus=0\n"+
		"Job=\nTriggeredBy=\nTimeoutStartUSec=infinity\nInactiveExitTimestamp=@1764369001\nMainPID=%d\nNRestarts=%d",
		name, typ, sub, pid, restarts)
}

// A service that was restarted during the settle window has not stayed
// converged, even though it is active again when looked at: a new main PID
// or a higher restart count says so, by name.
func TestARestartDuringTheSettleWindowIsNoticed(t *testing.T) {
	names := []string{"cc-ci-swarm.service", "cc-ci-proxy.service"}
	steady := map[string]string{
		"cc-ci-swarm.service": unit("cc-ci-swarm.service", "oneshot", "exited", 0, 0),
		"cc-ci-proxy.service": unit("cc-ci-proxy.service", "simple", "running", 4242, 0),
	}
	for _, c := range []struct {
		name  string
		after string // the proxy's block after the settle window
		want  string // "" = still converged
	}{
		{"nothing changed", steady["cc-ci-proxy.service"], ""},
		{"restarted by hand: another main PID", unit("cc-ci-proxy.service", "simple", "running", 5151, 0), "[unit-restarted]: main PID 4242 → 5151: it was restarted"},
		{"restarted by systemd (Restart=): the count went up", unit("cc-ci-proxy.service", "simple", "running", 4242, 2), "[unit-restarted]: restarted 2 times"},
		{"fell over", strings.Replace(unit("cc-ci-proxy.service", "simple", "running", 0, 0), "ActiveState=active\nSubState=running", "ActiveState=failed\nSubState=failed", 1), "[unit-fell]: no longer converged"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := &machine{units: steady}
			before, err := Units(context.Background(), m, names)
			require.NoError(t, err)
			m.units = map[string]string{"cc-ci-swarm.service": steady["cc-ci-swarm.service"], "cc-ci-proxy.service": c.after}
			_, err = StillConverged(context.Background(), m, before, 0)
			if c.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "cc-ci-proxy.service "+c.want)
			assert.NotContains(t, err.Error(), "cc-ci-swarm.service", "only the unit that changed is named")
		})
	}
}

// Each way the wait for convergence can end names the unit with the
// problem's identifier, so a reader (or a defect row) need not match prose
// or a setting: a unit systemd has given up on ends the wait at once; one
// still starting when the wait runs out is named as such.
func TestEveryVerdictNamesTheUnitWithItsIdentifier(t *testing.T) {
	names := []string{"cc-ci-swarm.service", "cc-ci-proxy.service"}
	swarm := unit("cc-ci-swarm.service", "oneshot", "exited", 0, 0)
	for _, c := range []struct {
		name, proxy, want string
	}{
		{"systemd restarts it after a timeout (auto-restart, result=timeout)",
			strings.NewReplacer("ActiveState=active\nSubState=running", "ActiveState=activating\nSubState=auto-restart", "Result=success", "Result=timeout").
				Replace(unit("cc-ci-proxy.service", "simple", "running", 0, 3)), "cc-ci-proxy.service [" + UnitFailed + "]: it failed"},
		{"still starting when the wait ran out",
			strings.Replace(unit("cc-ci-proxy.service", "simple", "running", 0, 0), "ActiveState=active\nSubState=running", "ActiveState=activating\nSubState=start", 1),
			"cc-ci-proxy.service [" + UnitNotYet + "]: still active=activating sub=start"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := &machine{units: map[string]string{"cc-ci-swarm.service": swarm, "cc-ci-proxy.service": c.proxy}}
			_, err := AwaitConverged(context.Background(), m, names, 10*time.Millisecond)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.NotContains(t, err.Error(), "cc-ci-swarm.service [", "a converged unit is named by no verdict")
		})
	}
}
