package judge

import (
	"fmt"
	"time"

	"github.com/cc-ci/acceptance/helpers/leakscan"
	"github.com/cc-ci/acceptance/helpers/tlscheck"
)

// PlaintextOnMachine is the identifier of a secret found in plaintext on
// the installed machine (C3: the store, the configured scan paths).
const PlaintextOnMachine = "plaintext-on-machine"

// PlaintextInRepo judges the leak scan of every object of one repo (named
// repo: "base repo", or its directory): each finding is a secret in
// plaintext in git (C3).
func PlaintextInRepo(repo string, found []leakscan.Finding) []Problem {
	return leaks(PlaintextInGit, repo, found)
}

// PlaintextOnTheMachine judges the leak scan of the installed machine's
// paths: each finding is a secret in plaintext there (C3).
func PlaintextOnTheMachine(found []leakscan.Finding) []Problem {
	return leaks(PlaintextOnMachine, "the machine", found)
}

func leaks(id, where string, found []leakscan.Finding) []Problem {
	out := make([]Problem, len(found))
	for i, f := range found {
		out[i] = Problem{ID: id, Test: "C3", File: where, Text: "holds a secret in plaintext: " + f.String()}
	}
	return out
}

// Certificate judges the certificate and key in git, found among the
// secrets by content (tlscheck.Pair: whatever file and format holds them):
// a PEM chain with its private key, the leaf covering *.<domain>, valid at
// least minDays more days from now (C2).
func Certificate(secrets map[string]string, domain string, minDays int, now time.Time) []Problem {
	chain, key, ok := tlscheck.Pair(secrets, domain)
	if !ok {
		return []Problem{{ID: CertificateInGit, Test: "C2", File: "the secrets in git",
			Text: "hold a PEM certificate chain and its private key: they hold none"}}
	}
	var out []Problem
	for _, e := range tlscheck.CertProblems([]byte(secrets[chain]), []byte(secrets[key]), domain, minDays, now) {
		out = append(out, Problem{ID: CertificateInGit, Test: "C2", File: fmt.Sprintf("the secrets %s and %s", chain, key),
			Text: fmt.Sprintf("are the certificate and key for *.%s, valid %d more days: %v", domain, minDays, e)})
	}
	return out
}
