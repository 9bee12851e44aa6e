package probe

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/remote"
	"github.com/cc-ci/acceptance/helpers/wait"
)

// UnitState is what systemd says about a unit, read in one go.
type UnitState struct {
	Name           string
	Type           string // oneshot, simple, …
	ActiveState    string // active, activating, failed, inactive
	SubState       string // exited, running, dead, failed
	Result         string // success, exit-code, …
	ExecMainStatus int
	LoadState      string // loaded, not-found
}

// Converged is the expectation: a oneshot that exited successfully and
// stays active (RemainAfterExit), or a service that is running.
func (u UnitState) Converged() bool {
	if u.LoadState != "loaded" || u.Result != "success" || u.ActiveState != "active" {
		return false
	}
	if u.Type == "oneshot" {
		return u.SubState == "exited" && u.ExecMainStatus == 0
	}
	return u.SubState == "running"
}

// Failed says the unit will not converge by waiting.
func (u UnitState) Failed() bool {
	return u.ActiveState == "failed" || u.LoadState == "not-found" || (u.Result != "" && u.Result != "success")
}

func (u UnitState) String() string {
	return fmt.Sprintf("%s: load=%s active=%s sub=%s result=%s status=%d type=%s",
		u.Name, u.LoadState, u.ActiveState, u.SubState, u.Result, u.ExecMainStatus, u.Type)
}

const unitProps = "Id,Type,LoadState,ActiveState,SubState,Result,ExecMainStatus"

// Units reads the state of each unit.
func Units(ctx context.Context, cl *remote.Client, names []string) ([]UnitState, error) {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = remote.ShellQuote(n)
	}
	res, err := cl.Run(ctx, "systemctl show --no-pager -p "+unitProps+" "+strings.Join(quoted, " "), 20*time.Second)
	if err != nil {
		return nil, fmt.Errorf("probe units: %w", err)
	}
	return ParseUnits(string(res.Stdout), len(names))
}

// unitValue is what a systemd unit name or state looks like; anything else
// the machine printed is refused before it reaches a message or evidence.
var unitValue = regexp.MustCompile(`^[A-Za-z0-9@._:\\-]{0,256}$`)

// ParseUnits reads `systemctl show -p Id,Type,…` output: one block of
// KEY=VALUE lines per unit, blocks separated by an empty line. want is the
// number of units asked for.
func ParseUnits(stdout string, want int) ([]UnitState, error) {
	var out []UnitState
	for _, block := range strings.Split(strings.TrimSpace(stdout), "\n\n") {
		u := UnitState{}
		for _, line := range strings.Split(block, "\n") {
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("probe units: systemctl printed %.60q, not KEY=VALUE", line)
			}
			if !unitValue.MatchString(v) {
				return nil, fmt.Errorf("probe units: systemctl printed an unexpected %s value %.60q", k, v)
			}
			switch k {
			case "Id":
				u.Name = v
			case "Type":
				u.Type = v
			case "LoadState":
				u.LoadState = v
			case "ActiveState":
				u.ActiveState = v
			case "SubState":
				u.SubState = v
			case "Result":
				u.Result = v
			case "ExecMainStatus":
				n, err := strconv.Atoi(v)
				if err != nil {
					return nil, fmt.Errorf("probe units: ExecMainStatus %.20q is not a number", v)
				}
				u.ExecMainStatus = n
			}
		}
		if u.Name == "" {
			return nil, fmt.Errorf("probe units: a block without Id: %.80q", block)
		}
		out = append(out, u)
	}
	if len(out) != want {
		return nil, fmt.Errorf("probe units: asked for %d units, systemd described %d", want, len(out))
	}
	return out, nil
}

// AwaitConverged waits until every unit has converged. A unit in failed
// state ends the wait at once; a timeout reports, from its last try, the
// units that did not converge, `systemctl --failed`, the job queue and each
// such unit's journal tail (redacted, then cut).
func AwaitConverged(ctx context.Context, cl *remote.Client, names []string, timeout time.Duration) ([]UnitState, error) {
	var last []UnitState
	err := wait.Eventually(ctx, "units "+strings.Join(names, ", ")+" to converge", timeout, func(lastTry bool) error {
		units, err := Units(ctx, cl, names)
		if err != nil {
			return err
		}
		last = units
		var bad []UnitState
		failed := false
		for _, u := range units {
			if !u.Converged() {
				bad = append(bad, u)
				failed = failed || u.Failed()
			}
		}
		if len(bad) == 0 {
			return nil
		}
		msg := describe(bad)
		if failed || lastTry {
			msg += diagnostics(ctx, cl, bad)
		}
		if failed {
			return wait.Stop(errors.New(msg))
		}
		return errors.New(msg)
	})
	return last, err
}

func describe(units []UnitState) string {
	s := make([]string, len(units))
	for i, u := range units {
		s[i] = u.String()
	}
	return "not converged: " + strings.Join(s, "; ")
}

func diagnostics(ctx context.Context, cl *remote.Client, bad []UnitState) string {
	var b strings.Builder
	run := func(title, cmd string) {
		res, err := cl.Run(ctx, cmd, 20*time.Second)
		fmt.Fprintf(&b, "\n--- %s\n", title)
		if err != nil && res == nil {
			fmt.Fprintf(&b, "(%v)", err)
			return
		}
		b.WriteString(strings.TrimSpace(cl.Tail(res.Stdout, 2048)))
	}
	run("systemctl --failed", "systemctl --failed --no-pager --no-legend || true")
	run("systemctl list-jobs", "systemctl list-jobs --no-pager --no-legend || true")
	for _, u := range bad {
		run("journal of "+u.Name, "journalctl --no-pager -n 20 -u "+remote.ShellQuote(u.Name)+" || true")
	}
	return b.String()
}
