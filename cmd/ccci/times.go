package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// A times file is what make test measured, read from go test -json's own
// events (gotestsum's --jsonfile): each package, each test, each matrix row.
// A measurement, not a sentence in a README that rots.

// event is the part of a test2json event the summary reads.
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64 // seconds, on pass/fail/skip
}

// timing is one package's or test's outcome and elapsed time.
type timing struct {
	name    string
	depth   int // 0 package, 1 test, 2 subtest (a matrix row)
	action  string
	elapsed time.Duration
}

// timesCmd prints the summary of the go test -json files it is given.
func timesCmd(files []string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintln(stderr, "usage: ccci times FILE.json…   (go test -json output, as make test writes it under out/)")
		return 2
	}
	for _, f := range files {
		ts, err := readTimes(f)
		if err != nil {
			fmt.Fprintf(stderr, "times: %v\n", err)
			return 2
		}
		fmt.Fprintf(stdout, "== %s\n", f)
		writeTimes(stdout, ts)
	}
	return 0
}

// maxEventLine bounds one event line (a test's output line can be long; an
// event is one line).
const maxEventLine = 4 << 20

// readTimes reads the outcome events of one go test -json file, in the order
// they ended, keeping packages, tests and their direct subtests.
func readTimes(path string) ([]timing, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []timing
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxEventLine)
	for line := 1; sc.Scan(); line++ {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("%s line %d: not a go test -json event: %v", path, line, err)
		}
		if ev.Action != "pass" && ev.Action != "fail" && ev.Action != "skip" {
			continue
		}
		depth := 0
		if ev.Test != "" {
			depth = 1 + strings.Count(ev.Test, "/")
		}
		if depth > 2 {
			continue
		}
		name := ev.Package
		if ev.Test != "" {
			name = ev.Test
		}
		out = append(out, timing{name: name, depth: depth, action: ev.Action,
			elapsed: time.Duration(ev.Elapsed * float64(time.Second)).Round(100 * time.Millisecond)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// writeTimes prints each package (slowest first), then its tests and their
// direct subtests (slowest first), indented under it; and the packages'
// sum (their wall time when they ran one at a time).
func writeTimes(w io.Writer, all []timing) {
	type pkg struct {
		timing
		tests []timing
	}
	var pkgs []*pkg
	var pending []timing // tests end before their package does
	var sum time.Duration
	for _, t := range all {
		if t.depth > 0 {
			pending = append(pending, t)
			continue
		}
		pkgs = append(pkgs, &pkg{timing: t, tests: pending})
		pending = nil
		sum += t.elapsed
	}
	sort.SliceStable(pkgs, func(i, j int) bool { return pkgs[i].elapsed > pkgs[j].elapsed })
	fmt.Fprintf(w, "%-9s %-6s %s\n", "elapsed", "result", "package / test / row")
	for _, p := range pkgs {
		fmt.Fprintf(w, "%8.1fs %-6s %s\n", p.elapsed.Seconds(), p.action, p.name)
		sort.SliceStable(p.tests, func(i, j int) bool { return p.tests[i].elapsed > p.tests[j].elapsed })
		for _, t := range p.tests {
			if t.depth == 1 {
				fmt.Fprintf(w, "%8.1fs %-6s   %s\n", t.elapsed.Seconds(), t.action, t.name)
				for _, s := range p.tests {
					if s.depth == 2 && strings.HasPrefix(s.name, t.name+"/") {
						fmt.Fprintf(w, "%8.1fs %-6s     %s\n", s.elapsed.Seconds(), s.action, s.name)
					}
				}
			}
		}
	}
	fmt.Fprintf(w, "%8.1fs        the packages' sum\n", sum.Seconds())
}
