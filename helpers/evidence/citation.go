package evidence

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/localfile"
	"github.com/cc-ci/acceptance/helpers/sshsig"
)

// LiveRebuildTest is the test whose pass, on a machine the run created, is
// a live rebuild (C4). Every recorded top-level test whose name extends it
// (its look at the end of the run, the restart) is part of it and must
// pass too.
const LiveRebuildTest = "TestC4GenuineLiveRebuild"

// RunIDPattern is a run id as the harness makes them (machine.NewRunID).
var RunIDPattern = regexp.MustCompile(`\br\d{8}t\d{6}-[0-9a-f]{6}\b`)

// CitedRuns are the run ids a text names, in order, each once.
func CitedRuns(text string) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range RunIDPattern.FindAllString(text, -1) {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// CitationError says why a cited run does not prove a live rebuild.
type CitationError struct {
	RunID  string
	Reason string
}

func (e *CitationError) Error() string { return "run " + e.RunID + ": " + e.Reason }

// destroyedPrefix starts Entry.Destroy when the run destroyed its machine
// and the API then answered not found.
const destroyedPrefix = "destroyed; API answers not found"

// DestroyedAndGone is Entry.Destroy for a run whose machine it destroyed and proved gone.
const DestroyedAndGone = destroyedPrefix + "; no instance of this run remains (C6 cleanup PASS)"

// ProvesLiveRebuild checks that the chain holds run id, that it passed C4
// on a machine it created (a reused machine is not a cold run) and then
// destroyed and proved gone (a kept one is not), was not cut short, and was
// recorded no longer than maxAge before now. It returns the
// entry, or a *CitationError naming everything that is missing.
func ProvesLiveRebuild(chain []Entry, id string, now time.Time, maxAge time.Duration) (Entry, error) {
	fail := func(format string, args ...any) (Entry, error) {
		return Entry{}, &CitationError{id, fmt.Sprintf(format, args...)}
	}
	var e *Entry
	for i := range chain {
		if chain[i].RunID == id {
			e = &chain[i]
		}
	}
	if e == nil {
		return fail("not in the evidence chain")
	}
	// Every reason is named, not the first: a reviewer fixing one should
	// not meet the next only on the following run.
	var why []string
	add := func(format string, args ...any) { why = append(why, fmt.Sprintf(format, args...)) }
	if e.Interrupted != "" {
		add("was interrupted (%s)", e.Interrupted)
	}
	if e.NotEvidence != "" {
		add("is not evidence (%s)", e.NotEvidence)
	}
	switch {
	case e.Machine == "":
		add("created no machine (neither a reused machine nor none at all is a cold rebuild)")
	case !strings.HasPrefix(e.Destroy, destroyedPrefix):
		// Kept (SKIP_teardown), or its teardown failed: the machine outlived
		// the run, and what it was when judged is no longer provable.
		add("its machine was not destroyed and proven gone (destroy: %q)", e.Destroy)
	}
	if r, ok := e.Result(LiveRebuildTest); !ok || r != "pass" {
		add("%s did not pass (recorded %q)", LiveRebuildTest, r)
	}
	for _, t := range e.Tests {
		if strings.HasPrefix(t.Name, LiveRebuildTest) && t.Name != LiveRebuildTest && !strings.Contains(t.Name, "/") && t.Result != "pass" {
			add("%s did not pass (recorded %q)", t.Name, t.Result)
		}
	}
	at, err := time.Parse(time.RFC3339, e.Time)
	switch {
	case err != nil:
		add("its time %q is not RFC 3339", e.Time)
	case at.After(now.Add(5 * time.Minute)):
		add("recorded at %s, in the future", e.Time)
	case now.Sub(at) > maxAge:
		add("recorded %s ago, more than %s (CCCI_D8_MAX_AGE)", now.Sub(at).Round(time.Minute), maxAge)
	}
	if len(why) > 0 {
		return fail("%s", strings.Join(why, "; "))
	}
	return *e, nil
}

// Binding is what a cited run must share with the run that judges the
// citation, besides the target's history (checked against the repository:
// target.OnlyChangedSince): the Incus endpoint it ran against, and a
// signature by a key the reviewer trusts.
type Binding struct {
	Incus     string          // the endpoint of this run (Entry.Incus)
	IncusCert string          // the certificate fingerprint its server reported (Entry.IncusCert)
	Allowed   []sshsig.Signer // CCCI_D8_ALLOWED_SIGNERS
}

// ProvesLiveRebuildFor is ProvesLiveRebuild for a citation: the entry must
// also be signed by an allowed key (a hash chain alone can be extended by
// anyone who can write the file) and have run against the same Incus.
func ProvesLiveRebuildFor(chain []Entry, id string, now time.Time, maxAge time.Duration, b Binding) (Entry, error) {
	e, err := ProvesLiveRebuild(chain, id, now, maxAge)
	if err != nil {
		return e, err
	}
	if len(b.Allowed) == 0 {
		return e, &CitationError{id, "no allowed signers are configured (CCCI_D8_ALLOWED_SIGNERS): no citation can be trusted"}
	}
	if _, err := checkSignature(e, b.Allowed); err != nil {
		return e, &CitationError{id, "its entry is not signed by an allowed key: " + err.Error()}
	}
	if e.Incus != b.Incus {
		return e, &CitationError{id, fmt.Sprintf("ran against Incus %q, not %q: a run on another host proves nothing here", e.Incus, b.Incus)}
	}
	switch {
	case b.IncusCert == "":
		return e, &CitationError{id, "this run's Incus server reported no certificate fingerprint: no citation can be bound to it"}
	case e.IncusCert == "":
		return e, &CitationError{id, "its entry names no Incus server certificate: another server behind the same address cannot be told apart"}
	case e.IncusCert != b.IncusCert:
		return e, &CitationError{id, fmt.Sprintf("ran against the Incus server with certificate %.16s…, not %.16s…: another server behind the same address proves nothing here", e.IncusCert, b.IncusCert)}
	}
	return e, nil
}

// LoadAllowedSigners reads an allowed_signers file (OpenSSH's format).
func LoadAllowedSigners(path string) ([]sshsig.Signer, error) {
	text, err := localfile.Read(path, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("allowed signers: %w", err)
	}
	allowed, err := sshsig.AllowedSigners(text)
	if err != nil {
		return nil, fmt.Errorf("allowed signers %s: %w", path, err)
	}
	return allowed, nil
}

// RepoURL is a repository URL as evidence records it: without credentials.
func RepoURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}

// Result is the recorded result of one test or sentence of the run.
func (e Entry) Result(test string) (string, bool) {
	for _, t := range e.Tests {
		if t.Name == test {
			return t.Result, true
		}
	}
	return "", false
}
