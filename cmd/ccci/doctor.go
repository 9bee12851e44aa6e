package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/doctor"
	"github.com/cc-ci/acceptance/helpers/redact"
)

// doctorCmd is the read-only preflight against the configured host
// (CCCI_CONFIG, or the lab's settings): a table of checks, exit 0 only when
// a run could start, 1 naming each blocker, 2 when the settings are unusable.
func doctorCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 0, "the -timeout the run will be given: a blocker if it cannot hold the run")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: ccci doctor [-timeout 150m]")
		return 2
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(stderr, "doctor: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), bounds.Checks+cfg.Timeouts.StepTimeout)
	defer cancel()
	rep := doctor.Run(ctx, doctor.Options{Config: cfg, Timeout: *timeout, Redact: &redact.Redactor{}})
	rep.Write(stdout)
	if !rep.Ready() {
		return 1
	}
	return 0
}
