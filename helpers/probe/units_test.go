package probe

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Recorded from the lab (systemd 252, --timestamp=unix): a converged oneshot
// and a running service.
const recorded = `Id=cc-ci-swarm.service
Type=oneshot
LoadState=loaded
ActiveState=active
SubState=exited
Result=success
ExecMainStatus=0
Job=
TriggeredBy=
TimeoutStartUSec=infinity
InactiveExitTimestamp=@1764369001

Id=cc-ci-proxy.service
Type=simple
LoadState=loaded
ActiveState=active
SubState=running
Result=success
ExecMainStatus=0
Job=
TriggeredBy=
TimeoutStartUSec=1min 30s
InactiveExitTimestamp=@1764369002
`

func TestParseUnitsRecordedOutput(t *testing.T) {
	us, err := ParseUnits(recorded, 2, "@1764369010")
	require.NoError(t, err)
	assert.True(t, us[0].Converged())
	assert.True(t, us[1].Converged())
	assert.Equal(t, "cc-ci-proxy.service: load=loaded active=active sub=running result=success status=0 type=simple", us[1].String())
}

// Whatever the machine prints is input: malformed or hostile output is an
// error naming what was wrong, never a state or a message carrying it.
func TestParseUnitsRefusesMalformedOutput(t *testing.T) {
	rows := map[string]struct {
		out  string
		want string
	}{
		"fewer units than asked":       {recorded[:len(recorded)/2], "asked for 2 units, systemd described 1"},
		"a line that is not KEY=VALUE": {"Id=a.service\nnonsense\n\nId=b.service", "not KEY=VALUE"},
		"terminal escapes in a state":  {"Id=a.service\nActiveState=active\x1b[2J\n\nId=b.service", "unexpected ActiveState value"},
		"a newline-free injection":     {"Id=a.service\nResult=success; rm -rf /\n\nId=b.service", "unexpected Result value"},
		"status not a number":          {"Id=a.service\nExecMainStatus=zero\n\nId=b.service", "ExecMainStatus"},
		"a timeout that is not a span": {"Id=a.service\nTimeoutStartUSec=soon\n\nId=b.service", "TimeoutStartUSec"},
		"a block without Id":           {"Type=oneshot\n\nId=b.service", "without Id"},
		"nothing at all":               {"", "not KEY=VALUE"},
	}
	for name, row := range rows {
		t.Run(name, func(t *testing.T) {
			_, err := ParseUnits(row.out, 2, "@1764369010")
			require.Error(t, err)
			assert.Contains(t, err.Error(), row.want)
			assert.NotContains(t, err.Error(), "\x1b", "no raw escape reaches the message")
		})
	}
}

func TestSystemdSpans(t *testing.T) {
	for in, want := range map[string]time.Duration{"infinity": 0, "1min 30s": 90 * time.Second, "500ms": 500 * time.Millisecond,
		"2h": 2 * time.Hour, "1d 2h 3min 4s 5ms 6us": 26*time.Hour + 3*time.Minute + 4*time.Second + 5*time.Millisecond + 6*time.Microsecond} {
		got, err := systemdSpan(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "soon", "5", "5 parsecs", "min"} {
		_, err := systemdSpan(bad)
		assert.Error(t, err, "%q", bad)
	}
}

// Once the switch has returned, systemd's state says when waiting is
// pointless; every other state is left to the timeout.
func TestHopelessIsDecidedBySystemdsState(t *testing.T) {
	oneshot := func(active, sub string) UnitState {
		return UnitState{Name: "u.service", Type: "oneshot", LoadState: "loaded", ActiveState: active, SubState: sub, Result: "success"}
	}
	rows := []struct {
		name string
		u    UnitState
		jobs int
		want string // "" = not decided
		id   string
	}{
		{"converged", oneshot("active", "exited"), 0, "", ""},
		{"failed", func() UnitState { u := oneshot("failed", "failed"); u.Result = "exit-code"; return u }(), 0, "it failed", UnitFailed},
		{"masked", func() UnitState { u := oneshot("inactive", "dead"); u.LoadState = "masked"; return u }(), 3, "masked", UnitNotLoaded},
		{"never started, nothing queued", oneshot("inactive", "dead"), 0, "will not start by itself", UnitInactive},
		{"inactive, its own job queued", func() UnitState { u := oneshot("inactive", "dead"); u.Job = "42"; return u }(), 1, "", ""},
		{"inactive, other jobs queued", oneshot("inactive", "dead"), 2, "", ""},
		{"inactive, a timer may start it", func() UnitState { u := oneshot("inactive", "dead"); u.TriggeredBy = "u.timer"; return u }(), 0, "", ""},
		{"activating, no start timeout (oneshot)", func() UnitState { u := oneshot("activating", "start"); u.ActivatingFor = time.Hour; return u }(), 1, "", ""},
		{"activating past its start timeout", func() UnitState {
			u := oneshot("activating", "start")
			u.StartTimeout, u.ActivatingFor = 90*time.Second, 2*time.Minute
			return u
		}(), 1, "past its own start timeout of 1m30s", UnitStuck},
		{"activating within its start timeout", func() UnitState {
			u := oneshot("activating", "start")
			u.StartTimeout, u.ActivatingFor = 90*time.Second, 10*time.Second
			return u
		}(), 1, "", ""},
		{"waiting to restart", func() UnitState {
			u := oneshot("activating", "auto-restart")
			u.StartTimeout, u.ActivatingFor = time.Second, time.Minute
			return u
		}(), 0, "", ""},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			id, why := row.u.Hopeless(row.jobs)
			assert.Equal(t, row.id, id, why)
			assert.Contains(t, why, row.want)
		})
	}
}

func TestActivatingForIsMeasuredOnTheMachinesClock(t *testing.T) {
	out := "Id=a.service\nType=oneshot\nLoadState=loaded\nActiveState=activating\nSubState=start\nInactiveExitTimestamp=@1000\nTimeoutStartUSec=30s"
	us, err := ParseUnits(out, 1, "@1100")
	require.NoError(t, err)
	assert.Equal(t, 100*time.Second, us[0].ActivatingFor)
	assert.Equal(t, 30*time.Second, us[0].StartTimeout)
	id, _ := us[0].Hopeless(1)
	assert.Equal(t, UnitStuck, id)
}

// Converged is systemd's own account of a unit that has done its job, per
// Type= and RemainAfterExit=, on `systemctl show` blocks as systemd prints
// them: the lab's reference instance (systemd 252) for e2scrub_reap,
// getty@tty1 and a unit never asked for; reload-systemd-vconsole-setup and
// logrotate-checkconf as NixOS declares them (nixpkgs
// nixos/modules/config/console.nix: no Type=, so simple, RemainAfterExit;
// services/logging/logrotate.nix: oneshot, RemainAfterExit).
func TestConvergedAsSystemdTellsIt(t *testing.T) {
	for _, c := range []struct {
		name, block string
		converged   bool
	}{
		{"a simple service with RemainAfterExit that exited 0 (reload-systemd-vconsole-setup)",
			"Id=reload-systemd-vconsole-setup.service\nType=simple\nRemainAfterExit=yes\nLoadState=loaded\nActiveState=active\nSubState=exited\nResult=success\nExecMainStatus=0\nInactiveExitTimestamp=@1796615034\nConditionResult=yes\nConditionTimestamp=@1796615034", true},
		{"a oneshot with RemainAfterExit (logrotate-checkconf)",
			"Id=logrotate-checkconf.service\nType=oneshot\nRemainAfterExit=yes\nLoadState=loaded\nActiveState=active\nSubState=exited\nResult=success\nExecMainStatus=0\nInactiveExitTimestamp=@1796615034\nConditionResult=yes\nConditionTimestamp=@1796615034", true},
		{"a oneshot without RemainAfterExit that ran and exited 0 (e2scrub_reap)",
			"Id=e2scrub_reap.service\nType=oneshot\nRemainAfterExit=no\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nResult=success\nExecMainStatus=0\nInactiveExitTimestamp=@1796615032\nConditionResult=yes\nConditionTimestamp=@1796615032", true},
		{"a unit its condition skipped (getty@tty1 in a container)",
			"Id=getty@tty1.service\nType=idle\nRemainAfterExit=no\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nResult=success\nExecMainStatus=0\nInactiveExitTimestamp=\nConditionResult=no\nConditionTimestamp=@1796615032", true},
		{"a notify service running (systemd-journald)",
			"Id=systemd-journald.service\nType=notify\nRemainAfterExit=no\nLoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nExecMainStatus=0\nInactiveExitTimestamp=@1796615032", true},
		{"a oneshot never started (its condition never checked either)",
			"Id=apt-daily.service\nType=oneshot\nRemainAfterExit=no\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nResult=success\nExecMainStatus=0\nInactiveExitTimestamp=\nConditionResult=no\nConditionTimestamp=", false},
		{"a oneshot still running", "Id=a.service\nType=oneshot\nLoadState=loaded\nActiveState=activating\nSubState=start\nResult=success\nInactiveExitTimestamp=@1796615032", false},
		{"a daemon that quit", "Id=d.service\nType=simple\nRemainAfterExit=no\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nResult=success\nExecMainStatus=0\nInactiveExitTimestamp=@1796615032", false},
		{"a oneshot that exited 1", "Id=f.service\nType=oneshot\nRemainAfterExit=no\nLoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainStatus=1\nInactiveExitTimestamp=@1796615032", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			us, err := ParseUnits(c.block, 1, "@1796615100")
			require.NoError(t, err)
			assert.Equal(t, c.converged, us[0].Converged(), "%+v", us[0])
		})
	}
}
