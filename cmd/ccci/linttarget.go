package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/target"
	"github.com/cc-ci/acceptance/helpers/targetlint"
)

// lintTarget checks the target's two repos as a run reads them, with no
// machine and no Incus (helpers/targetlint): exit 0 when a run would find
// no repo-level problem, 1 naming each, 2 when the settings or the repos
// cannot be read. The repos are fetched as a run fetches them (CCCI_CONFIG
// or the lab's settings: the two URLs and the age key).
func lintTarget(stdout, stderr io.Writer) int {
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(stderr, "lint-target: %v\n", err)
		return 2
	}
	r := &redact.Redactor{}
	key, err := target.LoadAgeKey(cfg.Target.AgeKeyFile, r)
	if err != nil {
		fmt.Fprintf(stderr, "lint-target: %v\n", err)
		return 2
	}
	dir, err := os.MkdirTemp("", "ccci-lint-target-")
	if err != nil {
		fmt.Fprintf(stderr, "lint-target: %v\n", err)
		return 2
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*cfg.Timeouts.StepTimeout+bounds.Git) // two clones, then reading them
	defer cancel()
	rp, err := target.Fetch(ctx, dir, cfg.Target, key, r)
	if err != nil {
		fmt.Fprintf(stderr, "lint-target: %v\n", r.RedactError(err))
		return 2
	}
	secrets, serr := target.Secrets(rp, key, r)
	values, _ := placeholders(stderr)
	problems := targetlint.Check(ctx, targetlint.Target{Repos: rp, Secrets: secrets, SecretsErr: serr, Key: key}, cfg, values)
	fmt.Fprintf(stdout, "lint-target: base %s at %.12s, secrets %s at %.12s: %d problem(s)\n",
		cfg.Target.BaseRepoURL, rp.BaseCommit, cfg.Target.SecretsRepoURL, rp.SecretsCommit, len(problems))
	for _, p := range problems {
		fmt.Fprintln(stdout, r.Redact(p.String()))
	}
	if len(problems) > 0 {
		return 1
	}
	return 0
}
