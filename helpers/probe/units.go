package probe

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
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
	LoadState      string        // loaded, not-found
	Job            string        // the id of a queued job for the unit, "" when none
	TriggeredBy    string        // units (timers, sockets, paths) that may start it
	StartTimeout   time.Duration // TimeoutStartUSec; 0 = infinity (oneshots' default)
	ActivatingFor  time.Duration // since it left "inactive", when activating
	MainPID        int           // 0 for an exited oneshot
	NRestarts      int           // restarts systemd has made (Restart=)
	// RemainAfterExit: the service stays active once its process exited.
	RemainAfterExit bool
	// Started: it left inactive at least once (InactiveExitTimestamp set).
	Started bool
	// ConditionChecked, ConditionMet: its Condition*= were checked, and held
	// (ConditionTimestamp, ConditionResult).
	ConditionChecked, ConditionMet bool
}

// Converged is the expectation, by systemd's own account of a unit that
// has done its job (systemd.service(5) Type=, RemainAfterExit=;
// systemd.unit(5): a unit whose Condition*= fails is skipped, no failure):
//   - a service that runs: active, running (a oneshot running is still starting);
//   - one that exited 0 and stays active (RemainAfterExit=, whatever its
//     Type=: NixOS's reload-systemd-vconsole-setup is a simple one): active, exited;
//   - a oneshot without RemainAfterExit= that ran and exited 0: inactive,
//     dead, result success;
//   - a unit its condition skipped: inactive, the condition checked and not met.
func (u UnitState) Converged() bool {
	if u.LoadState != "loaded" || u.Result != "success" {
		return false
	}
	switch {
	case u.ActiveState == "active" && u.SubState == "running":
		return u.Type != "oneshot"
	case u.ActiveState == "active" && u.SubState == "exited":
		return u.ExecMainStatus == 0
	case u.ActiveState == "inactive" && u.ConditionChecked && !u.ConditionMet:
		return true
	case u.ActiveState == "inactive" && u.Type == "oneshot" && !u.RemainAfterExit:
		return u.Started && u.ExecMainStatus == 0
	}
	return false
}

// Failed says the unit will not converge by waiting.
func (u UnitState) Failed() bool {
	return u.ActiveState == "failed" || u.LoadState == "not-found" || (u.Result != "" && u.Result != "success")
}

// What a unit verdict found, by a name that stays when the wording changes
// and carries no setting: a reader, or a defect row, asserts "<unit>
// [<id>]" (Problem) rather than prose. A defect seen at different moments
// (the first probe, the settle window, the end of the run) may be named by
// different ones.
const (
	UnitFailed      = "unit-failed"        // systemd says it failed (ActiveState, Result)
	UnitNotLoaded   = "unit-not-loaded"    // its unit file is not-found, masked, …
	UnitInactive    = "unit-inactive"      // inactive, nothing queued or triggering it
	UnitStuck       = "unit-stuck"         // activating past its own start timeout
	UnitNotYet      = "unit-not-converged" // still not converged when the wait ran out
	UnitFell        = "unit-fell"          // converged, then no longer
	UnitRestarted   = "unit-restarted"     // converged, then another main PID or more restarts
	problemTemplate = "%s [%s]: %s"
)

// Problem is one unit's verdict line: "<unit> [<id>]: <why>".
func Problem(unit, id, why string) string { return fmt.Sprintf(problemTemplate, unit, id, why) }

// Hopeless says, from systemd's own state once the switch has returned,
// whether waiting can no longer make the unit converge: the problem's
// identifier ("" when waiting may still help) and why. jobsQueued is the
// number of jobs in systemd's queue (any unit): a queued job may yet pull
// in a dependency, so an inactive unit is judged only when it is zero.
func (u UnitState) Hopeless(jobsQueued int) (id, why string) {
	switch {
	case u.Converged():
		return "", ""
	case u.Failed():
		return UnitFailed, "it failed"
	case u.LoadState != "loaded":
		return UnitNotLoaded, "its unit file is " + u.LoadState
	case u.ActiveState == "inactive" && u.Job == "" && u.TriggeredBy == "" && jobsQueued == 0:
		return UnitInactive, "it is inactive with no job queued and nothing to trigger it: it will not start by itself"
	case u.ActiveState == "activating" && u.SubState != "auto-restart" && u.StartTimeout > 0 && u.ActivatingFor > u.StartTimeout:
		return UnitStuck, fmt.Sprintf("it has been activating for %s, past its own start timeout of %s", u.ActivatingFor.Round(time.Second), u.StartTimeout)
	}
	return "", ""
}

func (u UnitState) String() string {
	return fmt.Sprintf("%s: load=%s active=%s sub=%s result=%s status=%d type=%s",
		u.Name, u.LoadState, u.ActiveState, u.SubState, u.Result, u.ExecMainStatus, u.Type)
}

const unitProps = "Id,Type,LoadState,ActiveState,SubState,Result,ExecMainStatus,Job,TriggeredBy,TimeoutStartUSec,InactiveExitTimestamp,MainPID,NRestarts," +
	"RemainAfterExit,ConditionResult,ConditionTimestamp"

// Units reads the state of each unit.
func Units(ctx context.Context, m Runner, names []string) ([]UnitState, error) {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = remote.ShellQuote(n)
	}
	// The machine's clock in the same breath, for how long a unit has been activating.
	res, err := m.Run(ctx, "date +@%s; systemctl show --no-pager --timestamp=unix -p "+unitProps+" "+strings.Join(quoted, " "), bounds.Command)
	if err != nil {
		return nil, fmt.Errorf("probe units: %w", err)
	}
	now, rest, _ := strings.Cut(string(res.Stdout), "\n")
	return ParseUnits(rest, len(names), now)
}

// jobsQueued is the number of jobs in systemd's queue.
func jobsQueued(ctx context.Context, m Runner) (int, error) {
	res, err := m.Run(ctx, "systemctl list-jobs --no-pager --no-legend | wc -l", bounds.Command)
	if err != nil {
		return 0, fmt.Errorf("probe jobs: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
	if err != nil {
		return 0, fmt.Errorf("probe jobs: %.20q is not a count", res.Stdout)
	}
	return n, nil
}

// unitValue is what a systemd unit name or state looks like; anything else
// the machine printed is refused before it reaches a message or evidence.
var unitValue = regexp.MustCompile(`^[A-Za-z0-9@._: -]{0,256}$`)

// ParseUnits reads `systemctl show --timestamp=unix -p Id,Type,…` output:
// one block of KEY=VALUE lines per unit, blocks separated by an empty line.
// want is the number of units asked for; now is the machine's clock as
// `date +@%s` printed it ("" if unknown).
func ParseUnits(stdout string, want int, now string) ([]UnitState, error) {
	clock, clockErr := unixTime(strings.TrimSpace(now))
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
			text := map[string]*string{"Id": &u.Name, "Type": &u.Type, "LoadState": &u.LoadState, "ActiveState": &u.ActiveState,
				"SubState": &u.SubState, "Result": &u.Result, "Job": &u.Job, "TriggeredBy": &u.TriggeredBy}
			number := map[string]*int{"ExecMainStatus": &u.ExecMainStatus, "MainPID": &u.MainPID, "NRestarts": &u.NRestarts}
			if p, ok := text[k]; ok {
				*p = v
				continue
			}
			if p, ok := number[k]; ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					return nil, fmt.Errorf("probe units: %s %.20q is not a number", k, v)
				}
				*p = n
				continue
			}
			switch k {
			case "TimeoutStartUSec":
				d, err := systemdSpan(v)
				if err != nil {
					return nil, fmt.Errorf("probe units: TimeoutStartUSec: %w", err)
				}
				u.StartTimeout = d
			case "InactiveExitTimestamp":
				t, err := unixTime(v)
				u.Started = err == nil && !t.IsZero()
				if u.Started && clockErr == nil {
					u.ActivatingFor = clock.Sub(t)
				}
			case "RemainAfterExit":
				u.RemainAfterExit = v == "yes"
			case "ConditionResult":
				u.ConditionMet = v == "yes"
			case "ConditionTimestamp":
				t, err := unixTime(v)
				u.ConditionChecked = err == nil && !t.IsZero()
			}
		}
		if u.Name == "" {
			return nil, fmt.Errorf("probe units: a block without Id: %.80q", block)
		}
		if u.ActiveState != "activating" {
			u.ActivatingFor = 0
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
func AwaitConverged(ctx context.Context, m Runner, names []string, timeout time.Duration) ([]UnitState, error) {
	var last []UnitState
	err := wait.Eventually(ctx, "units "+strings.Join(names, ", ")+" to converge", timeout, func(lastTry bool) error {
		units, err := Units(ctx, m, names)
		if err != nil {
			return err
		}
		last = units
		var bad []UnitState
		for _, u := range units {
			if !u.Converged() {
				bad = append(bad, u)
			}
		}
		if len(bad) == 0 {
			return nil
		}
		msg := describe(bad)
		switch why := hopeless(ctx, m, bad); {
		case why != "":
			return wait.Stop(errors.New(msg + why + diagnostics(ctx, m, bad)))
		case lastTry:
			return errors.New(msg + notYet(bad) + diagnostics(ctx, m, bad))
		}
		return errors.New(msg)
	})
	return last, err
}

// hopeless returns, for the units that systemd's state says cannot converge
// by waiting, why ("" when waiting may still help). The job queue is read
// only when a unit is inactive; if it cannot be read, inactive units are
// left to the timeout.
func hopeless(ctx context.Context, m Runner, bad []UnitState) string {
	jobs := -1 // not read yet
	var why []string
	for _, u := range bad {
		if u.ActiveState == "inactive" && jobs < 0 {
			n, err := jobsQueued(ctx, m)
			if err != nil {
				n = 1 // unknown: as if a job might still start it
			}
			jobs = n
		}
		if id, reason := u.Hopeless(max(jobs, 0)); id != "" {
			why = append(why, Problem(u.Name, id, reason))
		}
	}
	if len(why) == 0 {
		return ""
	}
	return "\n--- cannot converge by waiting (systemd's state)\n" + strings.Join(why, "\n")
}

// StillConverged re-reads the units after a settle window and reports every
// one that fell over or was restarted since before (converged states): no
// longer converged, another main PID, a higher restart count — each with its
// journal tail (redacted).
func StillConverged(ctx context.Context, m Runner, before []UnitState, settle time.Duration) ([]UnitState, error) {
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	names := make([]string, len(before))
	for i, u := range before {
		names[i] = u.Name
	}
	now, err := Units(ctx, m, names)
	if err != nil {
		return nil, err
	}
	var fell []UnitState
	var why []string
	for i, u := range now {
		b := before[i]
		switch {
		case !u.Converged():
			why = append(why, Problem(u.Name, UnitFell, fmt.Sprintf("no longer converged (%s)", u)))
		case u.MainPID != b.MainPID:
			why = append(why, Problem(u.Name, UnitRestarted, fmt.Sprintf("main PID %d → %d: it was restarted", b.MainPID, u.MainPID)))
		case u.NRestarts != b.NRestarts:
			why = append(why, Problem(u.Name, UnitRestarted, fmt.Sprintf("restarted %d times in %s", u.NRestarts-b.NRestarts, settle)))
		default:
			continue
		}
		fell = append(fell, u)
	}
	if len(fell) > 0 {
		return now, fmt.Errorf("after %s, %s%s", settle, strings.Join(why, "; "), diagnostics(ctx, m, fell))
	}
	return now, nil
}

// notYet names the units the wait ran out on (UnitNotYet).
func notYet(bad []UnitState) string {
	lines := make([]string, len(bad))
	for i, u := range bad {
		lines[i] = Problem(u.Name, UnitNotYet, fmt.Sprintf("still active=%s sub=%s", u.ActiveState, u.SubState))
	}
	return "\n--- not converged when the wait ran out\n" + strings.Join(lines, "\n")
}

func describe(units []UnitState) string {
	s := make([]string, len(units))
	for i, u := range units {
		s[i] = u.String()
	}
	return "not converged: " + strings.Join(s, "; ")
}

func diagnostics(ctx context.Context, m Runner, bad []UnitState) string {
	var b strings.Builder
	run := func(title, cmd string) {
		res, err := m.Run(ctx, cmd, bounds.Command)
		fmt.Fprintf(&b, "\n--- %s\n", title)
		if err != nil && res == nil {
			fmt.Fprintf(&b, "(%v)", err)
			return
		}
		b.WriteString(strings.TrimSpace(res.StdoutTail(2048)))
	}
	run("systemctl --failed", "systemctl --failed --no-pager --no-legend || true")
	run("systemctl list-jobs", "systemctl list-jobs --no-pager --no-legend || true")
	for _, u := range bad {
		run("journal of "+u.Name, "journalctl --no-pager -n 20 -u "+remote.ShellQuote(u.Name)+" || true")
	}
	return b.String()
}

// unixTime reads "@1732833600" (systemd's --timestamp=unix, date +@%s); ""
// is the zero time (systemd prints nothing for "never").
func unixTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(s, "@"), 10, 64)
	if err != nil || !strings.HasPrefix(s, "@") {
		return time.Time{}, fmt.Errorf("%.30q is not @SECONDS", s)
	}
	return time.Unix(n, 0), nil
}

// systemdSpan reads a time span as systemctl show prints it: "infinity"
// (returned as 0), "1min 30s", "500ms", "2h", "1d 2h 3min 4s 5ms 6us".
func systemdSpan(s string) (time.Duration, error) {
	if s == "infinity" {
		return 0, nil
	}
	units := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second,
		"min": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}
	var total time.Duration
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return 0, fmt.Errorf("empty time span")
	}
	for _, f := range fields {
		i := strings.IndexFunc(f, func(r rune) bool { return r < '0' || r > '9' })
		if i <= 0 {
			return 0, fmt.Errorf("time span %.30q: %q has no number and unit", s, f)
		}
		n, err := strconv.Atoi(f[:i])
		u, ok := units[f[i:]]
		if err != nil || !ok {
			return 0, fmt.Errorf("time span %.30q: %q is not a number and a unit", s, f)
		}
		total += time.Duration(n) * u
	}
	return total, nil
}
