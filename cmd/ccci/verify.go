package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/evidence"
	"github.com/cc-ci/acceptance/helpers/gitexec"
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
	historyFrom := fs.String("history-from", "", "a chain tracked in git: only its versions committed at or after this commit must still be in it (the history before was rewritten, and you accept that)")
	if err := fs.Parse(args); err != nil || fs.NArg() < 1 || fs.NArg() > 2 {
		fmt.Fprintln(stderr, "usage: ccci verify [-since RUN] [-head HASH] [-history-from COMMIT] ALLOWED_SIGNERS [REVIEW.jsonl]")
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
	// A chain kept in git has its heads recorded outside the file: every
	// committed version's last entry must still be in it, so a tail cut
	// after a commit is seen with no head kept by hand.
	heads, err := committedHeads(chain, *historyFrom)
	if err != nil {
		fmt.Fprintf(stderr, "verify: %v\n", err)
		return 2
	}
	for _, h := range heads {
		if !holds(verdicts, h.hash) {
			bad++
			fmt.Fprintf(stdout, "head %.16s (committed in %.12s): REJECTED: no entry has this hash: the entries from it on were removed (or the chain was rewritten)\n", h.hash, h.commit)
		}
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "verify: %s: %d of %d entries rejected\n", chain, bad, len(verdicts))
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d entries, chained and signed; head %.16s (note it: -head detects entries removed after it)\n",
		chain, len(verdicts), verdicts[len(verdicts)-1].Entry.Hash)
	if len(heads) > 0 {
		fmt.Fprintf(stdout, "%s: the heads of its %d committed versions are all in it\n", chain, len(heads))
	}
	return 0
}

// committedHead is the last entry's hash of one committed version of a chain.
type committedHead struct{ commit, hash string }

// maxCommittedVersions bounds how much of a chain's git history is read.
const maxCommittedVersions = 2000

// committedHeads is the head of each committed version of the chain file,
// newest first, down to commit from if given, when the file is tracked in a
// git work tree (none when it is not).
func committedHeads(chain, from string) ([]committedHead, error) {
	abs, err := filepath.Abs(chain)
	if err != nil {
		return nil, err
	}
	dir, name := filepath.Dir(abs), filepath.Base(abs)
	ctx, cancel := context.WithTimeout(context.Background(), bounds.Git)
	defer cancel()
	if _, err := gitexec.In(ctx, dir, dir, "ls-files", "--error-unmatch", "--", name); err != nil {
		return nil, nil // not in a work tree, or not tracked: nothing recorded outside the file
	}
	log, err := gitexec.In(ctx, dir, dir, "log", "--format=%H", "-n", strconv.Itoa(maxCommittedVersions), "--", name)
	if err != nil {
		return nil, err
	}
	var heads []committedHead
	versions := strings.Fields(string(log))
	if from != "" {
		full, err := gitexec.In(ctx, dir, dir, "rev-parse", "--verify", "--end-of-options", from+"^{commit}")
		if err != nil {
			return nil, fmt.Errorf("-history-from %q: %w", from, err)
		}
		at := slices.Index(versions, strings.TrimSpace(string(full)))
		if at < 0 {
			return nil, fmt.Errorf("-history-from %.12s: no version of %s was committed there", from, chain)
		}
		versions = versions[:at+1]
	}
	for _, c := range versions {
		body, err := gitexec.In(ctx, dir, dir, "show", c+":./"+name)
		if err != nil {
			continue // the commit removed the file
		}
		es, err := evidence.ParseChain(body)
		if err != nil {
			return nil, fmt.Errorf("%s as committed in %.12s: %w", chain, c, err)
		}
		if len(es) > 0 {
			heads = append(heads, committedHead{commit: c, hash: es[len(es)-1].Hash})
		}
	}
	return heads, nil
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
