package main

import (
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/cc-ci/acceptance/helpers/evidence"
)

// verify checks an evidence chain as a reviewer does: every entry chained
// and untampered, and signed by a key the allowed_signers file lists for
// evidence.Namespace. It prints each run's verdict and returns 0 when all
// hold, 1 naming each entry that does not, 2 on bad input.
func verify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	since := fs.String("since", "", "entries before this run id are from before signing: chain-checked only")
	head := fs.String("head", "", "the hash (12+ hex digits) of the chain's last entry when you last checked it: it must still be there")
	if err := fs.Parse(args); err != nil || fs.NArg() < 1 || fs.NArg() > 2 {
		fmt.Fprintln(stderr, "usage: ccci verify [-since RUN] [-head HASH] ALLOWED_SIGNERS [REVIEW.jsonl]")
		return 2
	}
	if *head != "" && !hexPrefix.MatchString(*head) {
		fmt.Fprintf(stderr, "verify: -head %q: want the first 12 or more hex digits of an entry's hash\n", *head)
		return 2
	}
	chain := "REVIEW.jsonl"
	if fs.NArg() == 2 {
		chain = fs.Arg(1)
	}
	allowed, err := evidence.LoadAllowedSigners(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "verify: %v\n", err)
		return 2
	}
	verdicts, err := evidence.Check(chain, allowed, *since)
	if err != nil {
		fmt.Fprintf(stderr, "verify: %v\n", err)
		return 2
	}
	if len(verdicts) == 0 {
		// A chain that is not there proves nothing: a lost or emptied file is a failure, never "0 entries, all good".
		fmt.Fprintf(stderr, "verify: %s: no entries (missing or empty): nothing to verify\n", chain)
		return 1
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
	if *head != "" && !holds(verdicts, *head) {
		bad++
		fmt.Fprintf(stdout, "head %s: REJECTED: no entry has this hash: the entries from it on were removed (or the chain was rewritten)\n", *head)
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "verify: %s: %d of %d entries rejected\n", chain, bad, len(verdicts))
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d entries, chained and signed; head %.16s (note it: -head detects entries removed after it)\n",
		chain, len(verdicts), verdicts[len(verdicts)-1].Entry.Hash)
	return 0
}

var hexPrefix = regexp.MustCompile(`^[0-9a-f]{12,64}$`)

// holds: an entry of the chain has a hash starting with head.
func holds(verdicts []evidence.Verdict, head string) bool {
	for _, v := range verdicts {
		if strings.HasPrefix(v.Entry.Hash, head) {
			return true
		}
	}
	return false
}
