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
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/judge"
	"github.com/cc-ci/acceptance/helpers/leakscan"
	"github.com/cc-ci/acceptance/helpers/repoint"
	"github.com/cc-ci/acceptance/helpers/sopsfile"
	"github.com/cc-ci/acceptance/helpers/target"
	"github.com/cc-ci/acceptance/helpers/undeclared"
)

// Target is what the lint reads: both repos as fetched, the secrets
// decrypted in memory, the parsed install.md (nil when it does not parse:
// its error is then a problem).
type Target struct {
	Repos      *target.Repos
	Secrets    map[string]string
	SecretsErr error // why the secrets file did not decrypt, if it did not
	Key        *target.AgeKey
}

// Check applies every repo-level rule and returns the problems, in order:
// the judge package's rules, as the C-tests apply them, and the rest.
func Check(ctx context.Context, tg Target, cfg *config.Config, placeholders map[string]string) []judge.Problem {
	var out []judge.Problem
	add := func(id, test, file, format string, args ...any) {
		out = append(out, judge.Problem{ID: id, Test: test, File: file, Text: fmt.Sprintf(format, args...)})
	}
	rp := tg.Repos

	// install.md (C3, C4, C7): it parses, every step is one a run can take,
	// and it reads as the plan's model.
	src, err := target.ReadBase(rp, target.InstallDoc)
	if err != nil {
		add(judge.Unreadable, "C4", target.InstallDoc, "%v", err)
	} else if doc, err := installdoc.Parse(target.InstallDoc, []byte(src), placeholders); err != nil {
		add(judge.InstallDocument, "C4", target.InstallDoc, "%v", err)
	} else {
		for _, p := range installdoc.Problems(doc, cfg.Target.AgeKeyPath) {
			add(judge.InstallDocument, "C3/C7", target.InstallDoc, "%s", strings.TrimPrefix(p, target.InstallDoc+": "))
		}
		out = append(out, judge.OperatorAsks(doc, cfg.Target.AgeKeyPath)...)
	}

	// The secrets repo and its file (C1, C3).
	if found, err := target.SecretsTreeProblems(ctx, rp); err != nil {
		add(judge.Unreadable, "C1", "secrets repo", "%v", err)
	} else {
		out = append(out, judge.SecretsRepoTree(found)...)
	}
	if tg.SecretsErr != nil {
		add(judge.SecretsFile, "C3", "secrets repo "+target.SecretsDoc, "%v", tg.SecretsErr)
	}
	required := cfg.Expect.RequiredSecrets
	if tg.SecretsErr != nil {
		required = nil // what did not decrypt cannot be looked for: the error above says so
	}
	if enc, err := target.ReadSecretsFile(rp); err != nil {
		add(judge.SecretsFile, "C3", "secrets repo "+target.SecretsDoc, "%v", err)
	} else if info, err := sopsfile.Inspect(enc); err != nil {
		add(judge.SecretsFile, "C3", "secrets repo "+target.SecretsDoc, "%v", err)
	} else {
		out = append(out, judge.RequiredSecrets(tg.Secrets, required, info.Plaintext())...)
	}
	out = append(out, judge.LongEnough(leakscan.TooShort(target.AllSecrets(rp, tg.Key, tg.Secrets), 0), leakscan.MinTokenLen)...)
	if fromRules, err := target.SopsRecipients(rp); err != nil {
		add(judge.Unreadable, "C1", "secrets repo .sops.yaml", "%v", err)
	} else if inFile, err := target.FileRecipients(rp, target.SecretsDoc); err != nil {
		add(judge.Unreadable, "C1", "secrets repo "+target.SecretsDoc, "%v", err)
	} else if tg.Key != nil {
		out = append(out, judge.Recipients(fromRules, inFile, tg.Key.Recipient)...)
	}

	// The certificate (C2), found by content.
	out = append(out, judge.Certificate(tg.Secrets, cfg.Target.Domain, cfg.Expect.CertMinDays, time.Now())...)

	// How the base pins the secrets repo, and DECISIONS.md (C1, C6).
	links, err := target.SecretsLinks(rp, cfg.Target.SecretsRepoURL)
	if err != nil {
		add(judge.Unreadable, "C1", "flake.lock", "%v", err)
	} else {
		out = append(out, judge.Pins(links, cfg.Target.SecretsRepoURL, rp.SecretsCommit)...)
	}
	if d, err := target.ReadDecisions(rp); err != nil {
		add(judge.Unreadable, "C1", target.DecisionsDoc, "%v", err)
	} else {
		ref := cfg.Expect.Reference[strings.LastIndex(cfg.Expect.Reference, "/")+1:]
		out = append(out, judge.Linkage(d.Linkage(), links)...)
		out = append(out, judge.Sizing(d.Sizing(ref), ref)...)
	}

	// Each parameter set once (C1); repointing it needs a build (the run's).
	if base, _, err := rp.Trees(ctx); err != nil {
		add(judge.Unreadable, "C1", "the base", "%v", err)
	} else {
		for _, p := range repoint.Parameters(cfg.Target.Domain, cfg.Target.Gateway) {
			sites, err := repoint.Sites(base, p.Value)
			if err != nil {
				add(judge.Unreadable, "C1", "the base", "%v", err)
			}
			out = append(out, judge.ParameterSiting(p, sites)...)
		}
	}

	// The D8 evidence (C5): its parts and wording; the cited runs need the
	// evidence chain and the host (the run judges them).
	if doc, err := target.ReadBase(rp, target.D8Doc); err != nil {
		add(judge.Unreadable, "C5", target.D8Doc, "%v", err)
	} else {
		out = append(out, judge.D8Document(doc, cfg.Expect.ForbiddenPhrases)...)
	}

	// The docs (C7).
	out = append(out, judge.Docs(judge.PlanDocs, target.ReadDocs(rp, judge.PlanDocs), cfg.Expect.StalePhrases)...)

	// No plaintext secret in either repo's objects, every ref (C3).
	sc := leakscan.New(leakscan.Needles(target.AllSecrets(rp, tg.Key, tg.Secrets), 0, nil))
	for _, repo := range []struct{ name, dir string }{{"base repo", rp.Base}, {"secrets repo", rp.Secrets}} {
		found, _, err := sc.Git(ctx, repo.dir)
		if err != nil {
			add(judge.Unreadable, "C3", repo.name, "%v", err)
		}
		out = append(out, judge.PlaintextInRepo(repo.name, found)...)
	}
	// … nor a secret that sops does not hold at all (C3).
	if found, err := undeclared.InRepos(ctx, rp.Base, rp.Secrets, target.AllSecrets(rp, tg.Key, tg.Secrets), cfg.Expect.PublicMaterial); err != nil {
		add(judge.Unreadable, "C3", "repos", "%v", err)
	} else {
		out = append(out, judge.UndeclaredSecrets(found)...)
	}
	return out
}
