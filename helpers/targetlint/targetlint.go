// Package targetlint checks, with no machine and no Incus, everything the
// harness reads from a target's two repos: install.md, how the base pins
// the secrets repo, the secrets file and repo, the certificate, the D8
// evidence document, the docs and DECISIONS.md — with the same rules the
// C-tests apply to them, each problem naming its file (and line where the
// rule knows it). What needs the machine (the declarations, evaluated
// there; the leak scan of the store; convergence; TLS) it does not judge.
package targetlint

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/leakscan"
	"github.com/cc-ci/acceptance/helpers/sopsfile"
	"github.com/cc-ci/acceptance/helpers/target"
	"github.com/cc-ci/acceptance/helpers/tlscheck"
)

// Problem is one thing a run would fail on, and the C-test it fails.
type Problem struct {
	Test string // C1 … C7
	File string // in the base repo unless it names the secrets repo
	Text string
}

func (p Problem) String() string { return fmt.Sprintf("%s: %s [%s]", p.File, p.Text, p.Test) }

// Target is what the lint reads: both repos as fetched, the secrets
// decrypted in memory, the parsed install.md (nil when it does not parse:
// its error is then a problem).
type Target struct {
	Repos      *target.Repos
	Secrets    map[string]string
	SecretsErr error // why the secrets file did not decrypt, if it did not
	Key        *target.AgeKey
}

// Check applies every repo-level rule and returns the problems, in order.
func Check(ctx context.Context, tg Target, cfg *config.Config, placeholders map[string]string) []Problem {
	var out []Problem
	add := func(test, file, format string, args ...any) {
		out = append(out, Problem{Test: test, File: file, Text: fmt.Sprintf(format, args...)})
	}
	rp := tg.Repos

	// install.md (C3, C4, C7): it parses, every step is one a run can take,
	// and it reads as the plan's model.
	src, err := target.ReadBase(rp, target.InstallDoc)
	if err != nil {
		add("C4", target.InstallDoc, "%v", err)
	} else if doc, err := installdoc.Parse(target.InstallDoc, []byte(src), placeholders); err != nil {
		add("C4", target.InstallDoc, "%v", err)
	} else {
		for _, p := range installdoc.Problems(doc, cfg.Target.AgeKeyPath) {
			add("C3/C7", target.InstallDoc, "%s", strings.TrimPrefix(p, target.InstallDoc+": "))
		}
		lower := strings.ToLower(src)
		for _, pre := range []string{"dns", "gateway"} {
			if !strings.Contains(lower, pre) {
				add("C7", target.InstallDoc, "does not state the %s precondition", strings.ToUpper(pre))
			}
		}
	}

	// The secrets repo and its file (C1, C3).
	if probs, err := target.SecretsTreeProblems(ctx, rp); err != nil {
		add("C1", "secrets repo", "%v", err)
	} else {
		for _, p := range probs {
			add("C1", "secrets repo "+p.Path, "%s (commit %.12s)", p.Why, p.Commit)
		}
	}
	if tg.SecretsErr != nil {
		add("C3", "secrets repo "+target.SecretsDoc, "%v", tg.SecretsErr)
	}
	if enc, err := target.ReadSecretsFile(rp); err != nil {
		add("C3", "secrets repo "+target.SecretsDoc, "%v", err)
	} else if info, err := sopsfile.Inspect(enc); err != nil {
		add("C3", "secrets repo "+target.SecretsDoc, "%v", err)
	} else if plain := info.Plaintext(); len(plain) > 0 {
		add("C3", "secrets repo "+target.SecretsDoc, "values not encrypted: %s", strings.Join(plain, ", "))
	}
	for _, name := range cfg.Expect.RequiredSecrets {
		if tg.SecretsErr == nil && tg.Secrets[name] == "" {
			add("C3", "secrets repo "+target.SecretsDoc, "no secret %s", name)
		}
	}
	if short := leakscan.TooShort(target.AllSecrets(rp, tg.Key, tg.Secrets), 0); len(short) > 0 {
		add("C3", "secrets repo "+target.SecretsDoc, "too short to be proven absent: %s", strings.Join(short, ", "))
	}
	if fromRules, err := target.SopsRecipients(rp); err != nil {
		add("C1", "secrets repo .sops.yaml", "%v", err)
	} else if inFile, err := target.FileRecipients(rp, target.SecretsDoc); err != nil {
		add("C1", "secrets repo "+target.SecretsDoc, "%v", err)
	} else if !slices.Equal(fromRules, inFile) {
		add("C1", "secrets repo "+target.SecretsDoc, "is encrypted to %v, not to the recipients .sops.yaml names %v", inFile, fromRules)
	}

	// The certificate (C2), found by content.
	if chain, key, ok := tlscheck.Pair(tg.Secrets, cfg.Target.Domain); !ok {
		add("C2", "secrets repo "+target.SecretsDoc, "holds no PEM certificate chain with its private key")
	} else {
		for _, e := range tlscheck.CertProblems([]byte(tg.Secrets[chain]), []byte(tg.Secrets[key]), cfg.Target.Domain, cfg.Expect.CertMinDays, time.Now()) {
			add("C2", "secrets repo "+target.SecretsDoc, "%s/%s: %v", chain, key, e)
		}
	}

	// How the base pins the secrets repo, and DECISIONS.md (C1, C6).
	links, err := target.SecretsLinks(rp, cfg.Target.SecretsRepoURL)
	if err != nil {
		add("C1", "flake.lock", "%v", err)
	} else if len(links) == 0 {
		add("C1", "flake.lock", "the base pins %s neither as a flake input nor as a git submodule", cfg.Target.SecretsRepoURL)
	}
	for _, l := range links {
		if l.Rev != rp.SecretsCommit {
			add("C1", l.Where, "%s pins %.12s; the secrets repo is at %.12s", l, l.Rev, rp.SecretsCommit)
		}
	}
	if d, err := target.ReadDecisions(rp); err != nil {
		add("C1", target.DecisionsDoc, "%v", err)
	} else {
		recorded := d.Linkage()
		if len(recorded) == 0 {
			add("C1", target.DecisionsDoc, "records no linkage of the secrets repo (flake input or git submodule)")
		}
		for _, l := range links {
			if len(recorded) > 0 && !slices.Contains(recorded, l.Kind) {
				add("C1", target.DecisionsDoc, "records the linkage as %v, but the base pins the secrets repo as a %s", recorded, l.Kind)
			}
		}
		ref := cfg.Expect.Reference[strings.LastIndex(cfg.Expect.Reference, "/")+1:]
		if len(d.Sizing(ref)) == 0 {
			add("C6", target.DecisionsDoc, "records no final %s sizing", ref)
		}
	}

	// The D8 evidence (C5): its parts and wording; the cited runs need the
	// evidence chain and the host (the run judges them).
	if doc, err := target.ReadBase(rp, target.D8Doc); err != nil {
		add("C5", target.D8Doc, "%v", err)
	} else {
		static, live := target.D8Parts(doc)
		if !target.ContainsPhrase(static, "byte-identical") {
			add("C5", target.D8Doc, "has no static part (a \"## Static\" section) stating the byte-identical closure")
		}
		if live == "" {
			add("C5", target.D8Doc, "has no live part (a \"## Live\" section)")
		}
		for _, phrase := range cfg.Expect.ForbiddenPhrases {
			if target.ContainsPhrase(doc, phrase) {
				add("C5", target.D8Doc, "says %q", phrase)
			}
		}
	}

	// The docs (C7).
	for _, p := range []string{target.InstallDoc, "docs/secrets.md", "architecture.md"} {
		text, err := target.ReadBase(rp, p)
		if err != nil {
			add("C7", p, "%v", err)
			continue
		}
		for _, phrase := range cfg.Expect.StalePhrases {
			if target.ContainsPhrase(text, phrase) {
				add("C7", p, "still describes the operator-dropped certificate (%q)", phrase)
			}
		}
	}

	// No plaintext secret in either repo's objects, every ref (C3).
	sc := leakscan.New(leakscan.Needles(target.AllSecrets(rp, tg.Key, tg.Secrets), 0, nil))
	for _, repo := range []struct{ name, dir string }{{"base repo", rp.Base}, {"secrets repo", rp.Secrets}} {
		found, _, err := sc.Git(ctx, repo.dir)
		if err != nil {
			add("C3", repo.name, "%v", err)
		}
		for _, f := range found {
			add("C3", repo.name, "plaintext secret: %s", f)
		}
	}
	return out
}
