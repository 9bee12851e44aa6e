package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/cc-ci/acceptance/helpers/evidence"
	"github.com/cc-ci/acceptance/helpers/localfile"
	"github.com/cc-ci/acceptance/helpers/sshsig"
)

// verify checks an evidence chain as a reviewer does: every entry chained
// and untampered, and signed by a key the allowed_signers file lists for
// evidence.Namespace. It prints each run's verdict and returns 0 when all
// hold, 1 naming each entry that does not, 2 on bad input.
func verify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	since := fs.String("since", "", "entries before this run id are from before signing: chain-checked only")
	if err := fs.Parse(args); err != nil || fs.NArg() < 1 || fs.NArg() > 2 {
		fmt.Fprintln(stderr, "usage: ccci verify [-since RUN] ALLOWED_SIGNERS [REVIEW.jsonl]")
		return 2
	}
	chain := "REVIEW.jsonl"
	if fs.NArg() == 2 {
		chain = fs.Arg(1)
	}
	text, err := localfile.Read(fs.Arg(0), 1<<20)
	if err != nil {
		fmt.Fprintf(stderr, "verify: allowed signers: %v\n", err)
		return 2
	}
	allowed, err := sshsig.AllowedSigners(text)
	if err != nil {
		fmt.Fprintf(stderr, "verify: %s: %v\n", fs.Arg(0), err)
		return 2
	}
	verdicts, err := evidence.Check(chain, allowed, *since)
	if err != nil {
		fmt.Fprintf(stderr, "verify: %v\n", err)
		return 2
	}
	bad := 0
	for _, v := range verdicts {
		e := v.Entry
		if v.Err != nil {
			bad++
			fmt.Fprintf(stdout, "entry %d (run %s): REJECTED: %v\n", v.N, e.RunID, v.Err)
			continue
		}
		fmt.Fprintf(stdout, "entry %d (run %s) %s %s — %s%s\n", v.N, e.RunID, e.Time, strings.ToUpper(e.Outcome),
			v.Principal, map[bool]string{true: " " + e.Signer, false: ""}[e.Signer != ""])
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "verify: %s: %d of %d entries rejected\n", chain, bad, len(verdicts))
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d entries, chained and signed\n", chain, len(verdicts))
	return 0
}
