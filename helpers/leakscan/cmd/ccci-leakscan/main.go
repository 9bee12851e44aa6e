// Command ccci-leakscan scans directories for needles read as JSON from
// stdin and prints a JSON report (leakscan.Report). It is copied to a machine
// and run there by the harness; it writes nothing but its canary.
//
//	ccci-leakscan DIR... < needles.json
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/cc-ci/acceptance/helpers/leakscan"
)

func main() {
	rep := run(os.Args[1:], os.Stdin)
	_ = json.NewEncoder(os.Stdout).Encode(rep)
	if rep.Error != "" {
		os.Exit(1)
	}
}

func run(dirs []string, stdin io.Reader) leakscan.Report {
	var needles []leakscan.Needle
	if err := json.NewDecoder(stdin).Decode(&needles); err != nil {
		return leakscan.Report{Error: fmt.Sprintf("read needles from stdin: %v", err)}
	}
	if len(dirs) == 0 {
		return leakscan.Report{Error: "no directory to scan"}
	}
	s := leakscan.New(needles)
	var rep leakscan.Report
	for _, d := range dirs {
		found, st, err := s.DirProven(context.Background(), d)
		rep.Findings = append(rep.Findings, found...)
		rep.Stats = append(rep.Stats, st)
		if err != nil {
			rep.Error = err.Error()
			return rep
		}
	}
	return rep
}
