package evidence

import (
	"fmt"
	"regexp"
	"time"
)

// LiveRebuildTest is the test whose pass, on a machine the run created, is
// a live rebuild (C4).
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

// ProvesLiveRebuild checks that the chain holds run id, that it passed C4
// on a machine it created (a reused machine is not a cold run), was not cut
// short, and was recorded no longer than maxAge before now. It returns the
// entry, or a *CitationError naming what is missing.
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
	switch {
	case e == nil:
		return fail("not in the evidence chain")
	case e.Interrupted != "":
		return fail("was interrupted (%s)", e.Interrupted)
	case e.NotEvidence != "":
		return fail("is not evidence (%s)", e.NotEvidence)
	case e.Machine == "":
		return fail("created no machine (a reused machine is not a cold rebuild)")
	}
	if r, ok := e.Result(LiveRebuildTest); !ok || r != "pass" {
		return fail("%s did not pass (recorded %q)", LiveRebuildTest, r)
	}
	at, err := time.Parse(time.RFC3339, e.Time)
	switch {
	case err != nil:
		return fail("its time %q is not RFC 3339", e.Time)
	case at.After(now.Add(5 * time.Minute)):
		return fail("recorded at %s, in the future", e.Time)
	case now.Sub(at) > maxAge:
		return fail("recorded %s ago, more than %s (CCCI_D8_MAX_AGE)", now.Sub(at).Round(time.Minute), maxAge)
	}
	return *e, nil
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
