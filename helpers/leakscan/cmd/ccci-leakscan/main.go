// Command ccci-leakscan scans directories for needles read as JSON from
// stdin and prints a JSON report (leakscan.Report). It is copied to a machine
// and run there by the harness; it writes nothing but its canary.
//
//	ccci-leakscan [-readable-by-others] [-skip DIR]... [-max-bytes N] DIR... < needles.json
package main

import (
	"context"
	"encoding/json"
	"flag"
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

func run(args []string, stdin io.Reader) leakscan.Report {
	var walk leakscan.Walk
	fl := flag.NewFlagSet("ccci-leakscan", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	fl.BoolVar(&walk.ReadableByOthers, "readable-by-others", false, "only files a non-root user can reach and read")
	fl.Func("skip", "a directory not to enter (repeatable)", func(s string) error { walk.Skip = append(walk.Skip, s); return nil })
	fl.Int64Var(&walk.MaxBytes, "max-bytes", 0, "stop after this many bytes (0: no bound)")
	fl.BoolVar(&walk.Processes, "processes", false, "also every process's arguments (/proc/<pid>/cmdline)")
	if err := fl.Parse(args); err != nil {
		return leakscan.Report{Error: fmt.Sprintf("arguments: %v", err)}
	}
	dirs := fl.Args()
	var needles []leakscan.Needle
	if err := json.NewDecoder(stdin).Decode(&needles); err != nil {
		return leakscan.Report{Error: fmt.Sprintf("read needles from stdin: %v", err)}
	}
	if len(dirs) == 0 {
		return leakscan.Report{Error: "no directory to scan"}
	}
	s := leakscan.New(needles)
	s.Walk = walk
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
	if walk.Processes {
		found, st, err := s.ProcessesProven(context.Background(), "/proc")
		rep.Findings = append(rep.Findings, found...)
		rep.Stats = append(rep.Stats, st)
		if err != nil {
			rep.Error = err.Error()
		}
	}
	return rep
}
