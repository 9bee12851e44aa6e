// Command ccci holds the harness's tools that need no lab.
//
//	ccci lint-install PATH                                  check a target's docs/install.md as a run would; print its steps
//	ccci lint-target                                        check the configured target's two repos as a run reads them (no machine, no Incus)
//	ccci verify [-since RUN] [-head HASH] ALLOWED_SIGNERS [REVIEW.jsonl] check the evidence chain, each entry's signature, and that a noted head is still in it
//	ccci doctor [-timeout D]                                the read-only preflight against the configured host: could a run start?
//	ccci harness                                            the harness commit this build names in its evidence
//	ccci times FILE.json…                                   each package's, test's and matrix row's time, from go test -json
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/cc-ci/acceptance/helpers/buildinfo"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/localfile"
	"github.com/cc-ci/acceptance/helpers/target"
)

func main() {
	switch {
	case len(os.Args) == 3 && os.Args[1] == "lint-install":
		os.Exit(lintInstall(os.Args[2], os.Stdout, os.Stderr))
	case len(os.Args) == 2 && os.Args[1] == "lint-target":
		os.Exit(lintTarget(os.Stdout, os.Stderr))
	case len(os.Args) >= 2 && os.Args[1] == "verify":
		os.Exit(verify(os.Args[2:], os.Stdout, os.Stderr))
	case len(os.Args) >= 2 && os.Args[1] == "doctor":
		os.Exit(doctorCmd(os.Args[2:], os.Stdout, os.Stderr))
	case len(os.Args) >= 2 && os.Args[1] == "times":
		os.Exit(timesCmd(os.Args[2:], os.Stdout, os.Stderr))
	case len(os.Args) == 2 && os.Args[1] == "harness":
		fmt.Println(buildinfo.Harness())
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, "usage: ccci lint-install PATH   (docs/writing-install-md.md)\n"+
		"       ccci lint-target   (the configured target's repos; docs/writing-install-md.md)\n"+
		"       ccci verify [-since RUN] [-head HASH] ALLOWED_SIGNERS [REVIEW.jsonl]   (docs/reviewing.md)\n"+
		"       ccci doctor [-timeout 150m]   (docs/operating.md)\n"+
		"       ccci harness\n"+
		"       ccci times FILE.json…   (make test's out/test-*.json)")
	os.Exit(2)
}

// lintInstall returns 0 when the document is fine, 1 when it is not (the
// problems on stderr, each naming the line), 2 when it cannot be read.
func lintInstall(path string, stdout, stderr io.Writer) int {
	src, err := localfile.Read(path, 4<<20)
	if err != nil {
		fmt.Fprintf(stderr, "lint-install: %v\n", err)
		return 2
	}
	values, ageKeyPath := placeholders(stderr)
	steps, err := installdoc.Lint(path, src, values, ageKeyPath)
	fmt.Fprint(stdout, steps)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	return 0
}

// placeholders are the values a run would fill in, from the configuration
// (CCCI_CONFIG or the lab's settings); without one, they are shown as
// ${NAME}. The machine's address is only known during a run.
func placeholders(stderr io.Writer) (map[string]string, string) {
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(stderr, "lint-install: no usable configuration, placeholders shown unresolved (%v)\n", err)
		cfg = &config.Config{Target: config.Target{AgeKeyPath: config.DefaultAgeKeyPath}}
	}
	v := target.Placeholders(cfg.Target.BaseRepoURL, cfg.Target.SecretsRepoURL, cfg.Target.Domain, cfg.Target.Gateway, "")
	for k, val := range v {
		if val == "" {
			v[k] = "${" + k + "}"
		}
	}
	return v, cfg.Target.AgeKeyPath
}
