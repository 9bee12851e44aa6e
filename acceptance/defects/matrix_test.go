// Package defects proves that the acceptance suite can fail: it runs the
// real suite (built once, each row run as go test -json would) against each
// broken target the fixtures generate and checks that exactly the expected
// C-tests fail, each with a message naming the cause, and that the others pass.
//
// What each broken target must fail is written beside the defect
// (fixtures/defects.go), and fixtures/README.md's table is checked against it.
package defects

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/fixtures"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/evidence"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/labtarget"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/leakscan"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/size"
	"github.com/cc-ci/acceptance/helpers/testrun"
)

func TestMain(m *testing.M) { os.Exit(labtest.Main(m)) }

// matrix is every row: the good target and its flavours, which nothing may
// fail; each broken target, expecting what fixtures/defects.go says beside
// the defect; each broken part of the host.
var matrix = func() map[string]fixtures.Failures {
	rows := map[string]fixtures.Failures{"good": {}}
	for _, f := range fixtures.Flavours() {
		rows[f] = fixtures.Failures{}
	}
	for _, d := range fixtures.Defects() {
		rows[d] = fixtures.Expected(d)
	}
	for h, row := range onHost {
		rows[h] = row.fails
	}
	return rows
}()

// A hostRow is a defect in the host, not the target: the good target, run
// with the settings that point at the lab's broken part (lab/lab.sh
// host_defects), what it must fail, and whether make test runs it (as
// fixtures.InMakeTest says of the target's defects).
type hostRow struct {
	settings   []string
	fails      fixtures.Failures
	inMakeTest bool
	refused    bool // the settings are refused at load: no run starts, nothing is created or recorded
}

// onHost are the host's broken parts. C6 and the blank-machine test judge the host.
var onHost = map[string]hostRow{
	// A machine that is not blank when handed over: nothing the target
	// does is wrong, and only the test that looks before the install fails.
	"image-not-blank": {[]string{"CCCI_IMAGE=ccci-not-blank"}, fixtures.Failures{
		"TestMachineIsBrandNewAndBlank": "/var/lib/ci-certs",
	}, true, false},
	// Every probe of the provisioned machine finds it blank; its store holds
	// the good target's system already, so the switch builds nothing.
	"image-holds-the-system": {[]string{"CCCI_IMAGE=ccci-prebuilt"}, fixtures.Failures{
		"TestC4GenuineLiveRebuild": "that the image's own system does not need: the install activated them without building or fetching them",
	}, true, false},
	// The reference is sized 6GiB, not 4GiB (and, stopped, runs no system).
	"reference-oversized": {[]string{"CCCI_REFERENCE=terraform-ci/cc-nix-oversized"}, fixtures.Failures{
		"TestC1SecretsRepoSplit":      "read the running reference system terraform-ci/cc-nix-oversized",
		"TestC6ResourceFitAndCleanup": "terraform-ci/cc-nix-oversized limits.memory",
	}, false, false},
	// The same lab reached by another endpoint: the targets' citations were
	// made over HTTPS, so to this run they are runs on another Incus.
	"d8-run-on-another-incus": {[]string{"CCCI_TRANSPORT=unix"}, fixtures.Failures{
		"TestC5HonestD8": `ran against Incus "https://127.0.0.1:8443", not "unix:/var/lib/incus/unix.socket"`,
	}, false, false},
	// The reviewer trusts another runner's key only ({signing}: the lab's
	// signing directory, where lab up keeps that key's allowed_signers).
	"d8-signer-not-allowed": {[]string{"CCCI_D8_ALLOWED_SIGNERS={signing}/stranger_allowed_signers"}, fixtures.Failures{
		"TestC5HonestD8": "which allowed_signers does not list",
	}, false, false},
	// TLS asked at the lab's gateway, which forwards 443 to the reference
	// (lab/steps/targets.sh gateway): the reference's answer, whatever the
	// throwaway serves. Refused at load, so every test says why.
	"tls-at-the-gateway": {[]string{"CCCI_TLS_ADDR={gateway}:443"}, everyTestFails("is the gateway (CCCI_GATEWAY"), false, true},
	// TLS asked at the reference's own address: another instance's answer.
	"tls-at-the-reference": {[]string{"CCCI_TLS_ADDR={reference}:443"}, fixtures.Failures{
		"TestC2CertInGit":          "is the address of terraform-ci/cc-nix-test, not of the throwaway",
		"TestC4GenuineLiveRebuild": "is the address of terraform-ci/cc-nix-test, not of the throwaway",
	}, false, false},
}

// everyTestFails is a row whose settings no run starts with: every C-test
// fails, naming cause.
func everyTestFails(cause string) fixtures.Failures {
	f := fixtures.Failures{}
	for _, test := range cTests {
		f[test] = cause
	}
	return f
}

// referenceAddr is the running reference's IPv4 address, as Incus reports it.
func referenceAddr(t *testing.T, c *incus.Client, reference string) string {
	t.Helper()
	project, name, _ := strings.Cut(reference, "/")
	st, err := c.State(context.Background(), project, name)
	require.NoError(t, err, "the reference %s", reference)
	for _, n := range st.Network {
		for _, a := range n.Addresses {
			if a.Family == "inet" && a.Scope == "global" {
				return a.Address
			}
		}
	}
	t.Fatalf("the reference %s has no IPv4 address", reference)
	return ""
}

// rowSettings are settings a target's row runs with besides the matrix's
// short waits: the proxy that dies 45 s after it starts must still be up at
// the settle look (C4's first probe comes after C1–C3 have judged the
// installed machine: 9 s after the switch on the lab) and gone at the last
// one, which comes only after the hold.
var rowSettings = map[string][]string{
	"proxy-dies-during-the-run": {"CCCI_HOLD=50s"},
}

// The tests every target is judged by; one not listed for a defect must pass.
var cTests = []string{
	"TestC1SecretsRepoSplit", "TestC2CertInGit", "TestC3AllSecretsInGitOneException", "TestC4GenuineLiveRebuild",
	"TestC5HonestD8", "TestC6ResourceFitAndCleanup", "TestC7Docs", "TestMachineIsBrandNewAndBlank",
}

func TestEveryDefectFailsTheRightTests(t *testing.T) {
	cfg := labtest.Config(t)
	if !cfg.HasTarget() {
		labtest.Unavailable(t, "no target configured (make lab-up)")
	}
	gitBase := strings.TrimSuffix(cfg.Target.BaseRepoURL, "/good/cc-ci.git")
	if gitBase == cfg.Target.BaseRepoURL {
		labtest.Unavailable(t, "CCCI_BASE_REPO_URL is not the lab's good target")
	}
	for _, d := range append(fixtures.Defects(), fixtures.Flavours()...) {
		require.Contains(t, matrix, d, "target %s has no row in the matrix", d)
	}
	rows, noMachine := inTier(t, withFlavours(t))
	names := slices.Sorted(maps.Keys(rows))
	c, _ := labtest.Client(t, "https")
	// The suite is built once; each row runs it (a row used to rebuild and relink it).
	suite := labtest.Suite(t)
	// Nothing the harness writes may hold a secret, whatever the target did.
	// … nor any secret of a flavour's (its own credential: a deploy key).
	secrets := labtarget.TargetSecrets(t)
	for _, f := range fixtures.Flavours() {
		at := []string{"CCCI_BASE_REPO_URL=" + gitBase + "/" + f + "/cc-ci.git", "CCCI_SECRETS_REPO_URL=" + gitBase + "/" + f + "/cc-ci-secrets.git"}
		for name, v := range labtarget.TargetSecretsWith(t, append(at, targetSettings(t, filepath.Join(targetsRoot(cfg.Target.AgeKeyFile), f))...)) {
			secrets[f+"/"+name] = v // beside the good target's same-named ones
		}
	}
	scanner := leakscan.New(leakscan.Needles(secrets, 0, nil))
	// Rows run matrixWorkers at a time, as concurrent CI runs would: the RAM
	// guardrail gets one more throwaway's room per extra row.
	hostEnv := []string{"CCCI_RAM_CAP=" + size.Format(cfg.Guardrails.RAMCap+int64(matrixWorkers-1)*cfg.Machine.Memory)}
	slots := make(chan struct{}, matrixWorkers)
	var mu sync.Mutex // guards what the rows collect below
	var table []string
	// Per good target (good, each flavour): its run, and sentence → the
	// defects made on it that fail the sentence.
	failedBy := map[string]map[string][]string{}
	goods := map[string]map[string]*result{}
	// Runs when every row is done (cleanups wait for parallel subtests).
	t.Cleanup(func() {
		noHarnessInstanceLeft(t, c, cfg, "")
		sort.Strings(table)
		t.Logf("defect matrix:\n%s", strings.Join(table, "\n"))
		if len(table) != len(rows) {
			return
		}
		// The good target's, and each flavour's that has its own (hostRowsOn).
		for _, g := range append([]string{"good"}, fixtures.Flavours()...) {
			switch {
			case !hasCoverage(g):
			case goods[g] == nil:
				t.Errorf("no run of %s: its coverage cannot be judged", g)
			default:
				checkCoverage(t, g, goods[g], failedBy[g])
			}
		}
	})
	for _, name := range names {
		want := rows[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for range slotsFor(name) {
				slots <- struct{}{}
			}
			defer func() {
				for range slotsFor(name) {
					<-slots
				}
			}()
			start := time.Now()
			flavour, defect := madeOn(name)
			tgt, env := name, slices.Clone(onHost[defect].settings)
			if env != nil {
				tgt = flavour
				for i := range env {
					env[i] = strings.NewReplacer("{signing}", filepath.Dir(cfg.Evidence.D8Signers), "{gateway}", cfg.Target.Gateway,
						"{reference}", referenceAddr(t, c, cfg.Expect.Reference)).Replace(env[i])
				}
			}
			keysBefore := digests(t, filepath.Join(targetsRoot(cfg.Target.AgeKeyFile), tgt, "keys"))
			env = append(env, targetSettings(t, filepath.Join(targetsRoot(cfg.Target.AgeKeyFile), tgt))...)
			if noMachine[name] {
				env = append(env, "CCCI_MACHINE=none")
			}
			results, wrote := runSuite(t, suite, gitBase+"/"+tgt, append(append(hostEnv, env...), rowSettings[defect]...)...)
			mu.Lock()
			defer mu.Unlock()
			if defect == flavour {
				goods[flavour] = results
			}
			if failedBy[flavour] == nil {
				failedBy[flavour] = map[string][]string{}
			}
			for test, r := range results {
				if r.action == "fail" {
					failedBy[flavour][test] = append(failedBy[flavour][test], name)
				}
				for sub, action := range r.subs {
					if action == "fail" {
						failedBy[flavour][sub] = append(failedBy[flavour][sub], name)
					}
				}
			}
			assert.Equal(t, keysBefore, digests(t, filepath.Join(targetsRoot(cfg.Target.AgeKeyFile), tgt, "keys")),
				"the target's key files on this host are unchanged (nothing written through a symlink)")
			var leaks []string
			found, err := scanner.Reader("the suite's -json output", bytes.NewReader(wrote.output))
			require.NoError(t, err)
			for _, dir := range []string{wrote.reviewDir, wrote.tmpDir} {
				f, _, err := scanner.DirProven(context.Background(), dir)
				require.NoError(t, err)
				found = append(found, f...)
			}
			for _, f := range found {
				leaks = append(leaks, f.String())
			}
			assert.Empty(t, leaks, "secret material in what the harness wrote for %s", name)
			left, _ := os.ReadDir(wrote.tmpDir)
			assert.Empty(t, left, "temp files the run left behind")
			// Asked of the API: no instance of the run survives it.
			es, err := evidence.Read(evidence.PathsFor(filepath.Join(wrote.reviewDir, "REVIEW.md")).JSONL)
			switch {
			case onHost[defect].refused:
				// No run started: it proved nothing, so it records nothing.
				assert.Empty(t, es, "a run refused at load writes no evidence")
			case assert.NoError(t, err, "the run's evidence") && assert.Len(t, es, 1, "the run's evidence entries"):
				noHarnessInstanceLeft(t, c, cfg, es[0].RunID)
			}
			// A run that refused the install before creating a machine says so (testrun.RefusedBeforeMachine).
			refused := bytes.Contains(wrote.output, []byte(testrun.RefusedBeforeMachine))
			for _, test := range cTests {
				r, ok := results[test]
				if !assert.True(t, ok, "%s did not run", test) {
					continue
				}
				cause, listed := want[test]
				switch skipCause, skips := strings.CutPrefix(cause, fixtures.SkipMark); {
				case listed && skips && noMachine[name] && strings.Contains(r.output, testrun.NoMachineSkip):
					// With no machine it may skip on that before it meets the cause.
					assert.NotEqual(t, "fail", r.action, "%s must not fail on %s (another test owns the cause): it skips; output:\n%s", test, name, labtest.Tail(r.output))
				case listed && skips:
					assert.NotEqual(t, "fail", r.action, "%s must not fail on %s (another test owns the cause): it skips; output:\n%s", test, name, labtest.Tail(r.output))
					assert.True(t, r.skippedSomething(), "%s must say it could not judge on %s", test, name)
					assert.Contains(t, r.output, "cannot judge: ", "%s's skip must say why", test)
					assert.True(t, fixtures.Names(r.output, skipCause), "%s's skip must name the cause %q", test, skipCause)
				case listed:
					if assert.Equal(t, "fail", r.action, "%s must FAIL on %s", test, name) {
						assert.True(t, fixtures.Names(r.output, cause), "%s's failure must name the cause %q; output:\n%s", test, cause, labtest.Tail(r.output))
					}
				case refused:
					// No machine was created for an install the run refused: what needs one says so.
					assert.NotEqual(t, "fail", r.action, "%s must not fail on %s; output:\n%s", test, name, labtest.Tail(r.output))
					if r.skippedSomething() {
						assert.Contains(t, r.output, testrun.RefusedBeforeMachine, "%s's skips on %s are for want of a machine", test, name)
					}
				case noMachine[name]:
					// What needs no machine passes; what needs one says so.
					assert.NotEqual(t, "fail", r.action, "%s must not fail on %s; output:\n%s", test, name, labtest.Tail(r.output))
					assert.NotContains(t, r.output, "cannot judge: ", "%s must judge all it can on %s; output:\n%s", test, name, labtest.Tail(r.output))
					if r.skippedSomething() {
						assert.Contains(t, r.output, testrun.NoMachineSkip, "%s's skips on %s are for want of a machine", test, name)
					}
				default:
					assert.Equal(t, "pass", r.action, "%s must PASS on %s; output:\n%s", test, name, labtest.Tail(r.output))
					assert.False(t, r.skippedSomething(), "%s must judge every sentence on %s, none skipped; output:\n%s", test, name, labtest.Tail(r.output))
				}
			}
			table = append(table, fmt.Sprintf("%-36s fails %-32s %6s   units verdict %s", name, shortNames(want),
				time.Since(start).Round(time.Second), verdictLatency(results["TestC4GenuineLiveRebuild"])))
		})
	}
}

// MatrixEnv chooses the rows: "test" runs make test's tier (the good
// targets, and the rows that together make every sentence fail on each
// target with a coverage check: fixtures.InMakeTest, hostRow.inMakeTest);
// "full" (the default) runs every row.
const MatrixEnv = "CCCI_MATRIX"

// inTier is the rows the run's tier (MatrixEnv) runs, and those of them it
// runs with no machine (Failures.FromTheRepos: what they must fail then).
func inTier(t *testing.T, rows map[string]fixtures.Failures) (map[string]fixtures.Failures, map[string]bool) {
	t.Helper()
	switch tier := os.Getenv(MatrixEnv); tier {
	case "", "full":
		return rows, nil
	case "test":
		picked, noMachine := map[string]fixtures.Failures{}, map[string]bool{}
		for name, want := range rows {
			flavour, defect := madeOn(name)
			if defect != flavour && !(hasCoverage(flavour) && (fixtures.InMakeTest(defect) || onHost[defect].inMakeTest)) {
				continue
			}
			picked[name] = want
			if kept, ok := want.FromTheRepos(defect); ok {
				picked[name], noMachine[name] = kept, true
			}
		}
		t.Logf("%s=test: %d of the matrix's %d rows, %d of them with no machine (make test-full runs every row on one)",
			MatrixEnv, len(picked), len(rows), len(noMachine))
		return picked, noMachine
	default:
		t.Fatalf("%s=%q: use test (make test's tier) or full (every row)", MatrixEnv, tier)
		return nil, nil
	}
}

// hasCoverage says whether a good target (good, or a flavour) has a
// coverage check of its own: every sentence must be made to fail by a
// defect made on it.
func hasCoverage(good string) bool { return good == "good" || hostRowsOn[good] != nil }

// flavourWording is how a flavour words what the good target's rows
// expect: its own TLS server name; its pin, a gitlink.
var flavourWording = map[string]*strings.Replacer{
	"good-deploy-key": strings.NewReplacer("dashboard.ci.lab.test", "drone.ci.lab.test"),
	"good-submodule": strings.NewReplacer(
		"flake.lock pins", "the base's tree (a gitlink) pins",
		"[git submodule], but the base pins the secrets repo as a flake input", "[flake input], but the base pins the secrets repo as a git submodule"),
}

// onFlavourRows are the rows that expect, on a flavour, other than what
// the good target's row expects in the flavour's words.
var onFlavourRows = map[string]fixtures.Failures{
	// The run it cites is of the good target, whose commit is an ancestor
	// here too: since then, the flavour's files changed as well.
	"good-deploy-key+d8-cites-a-run-before-a-change": {
		"TestC5HonestD8": "changed, not only docs/d8-evidence.md: its proof is not of this target",
	},
}

// hostRowsOn are the host's rows run on a flavour too: what the coverage
// check of the flavour shaped like the real cc-ci needs of the host (C4's
// store look, the blank-machine test). A flavour named here has its own
// coverage check, as the good target has: every sentence made to fail by a
// defect made on it (fixtures.FlavourDefects).
var hostRowsOn = map[string][]string{"good-deploy-key": {"image-holds-the-system", "image-not-blank"}}

// withFlavours is the matrix and the defects made on flavours
// (fixtures.FlavourDefects, and hostRowsOn), each expecting what the row
// expects of the good target, in the flavour's words.
func withFlavours(t *testing.T) map[string]fixtures.Failures {
	t.Helper()
	rows := maps.Clone(matrix)
	made := fixtures.FlavourDefects()
	for f, hosts := range hostRowsOn {
		for _, h := range hosts {
			_, ok := onHost[h]
			require.True(t, ok, "hostRowsOn: %s is no host row", h)
			made = append(made, fixtures.OnFlavour(f, h))
		}
	}
	for _, name := range made {
		flavour, defect := madeOn(name)
		wording, ok := flavourWording[flavour]
		require.True(t, ok, "flavour %s has no wording in the matrix", flavour)
		want := fixtures.Failures{}
		for test, cause := range matrix[defect] {
			want[test] = wording.Replace(cause)
		}
		if own, ok := onFlavourRows[name]; ok {
			want = own
		}
		rows[name] = want
	}
	return rows
}

// madeOn splits a row's name into the good target it was made on (good or
// a flavour) and its defect (the flavour itself for its own good row).
func madeOn(name string) (flavour, defect string) {
	if f, d, ok := fixtures.SplitOnFlavour(name); ok {
		return f, d
	}
	if slices.Contains(fixtures.Flavours(), name) {
		return name, name
	}
	return "good", name
}

// runsAlone are rows that would make another row's machine fail: the IPv6
// defect pings every node on the bridge to find a neighbour, and a
// machine installing beside it answers — a packet its own run rightly
// counts as a contact. They take every slot.
var runsAlone = map[string]bool{"install-sends-over-ipv6": true}

func slotsFor(name string) int {
	if _, defect := madeOn(name); runsAlone[defect] {
		return matrixWorkers
	}
	return 1
}

// matrixWorkers is how many rows run at once: the lab has two CPUs, and a
// row mostly waits (boots, settle windows). Measured: 352 s one at a time,
// about 190 s two at a time.
const matrixWorkers = 2

// noHarnessInstanceLeft asks the API that no harness instance of runID (of
// any run, if empty) is left in the project.
func noHarnessInstanceLeft(t *testing.T, c *incus.Client, cfg *config.Config, runID string) {
	t.Helper()
	ins, err := c.Instances(context.Background(), cfg.Machine.Project)
	require.NoError(t, err)
	l := machine.Labels{Prefix: cfg.Guardrails.LabelPrefix}
	for _, in := range ins {
		if l.Marked(&in) && (runID == "" || in.Config[l.RunID()] == runID) {
			t.Errorf("instance %s (run %s) left behind", in.Name, in.Config[l.RunID()])
		}
	}
}

// notYetFailable are the sentences no broken target makes fail yet, each
// with the reason. The list is checked both ways: a sentence missing from
// it that no defect fails is an error, and so is one listed here that a
// defect now fails (remove it). Empty is the goal.
var notYetFailable = map[string]string{}

// checkCoverage is the mutation-coverage table of one good target (good,
// or a flavour): every test and sentence of the suite, as it ran on that
// target, with the defects made on it that make it fail.
func checkCoverage(t *testing.T, target string, good map[string]*result, failedBy map[string][]string) {
	t.Helper()
	var all []string
	for test, r := range good {
		all = append(all, test)
		for sub := range r.subs {
			all = append(all, sub)
		}
	}
	sort.Strings(all)
	var rows []string
	for _, s := range all {
		by := failedBy[s]
		sort.Strings(by)
		reason, listed := notYetFailable[s]
		switch {
		case len(by) == 0 && !listed:
			t.Errorf("no defect made on %s makes %q fail: a check that cannot fail is a defect (add a broken target, or list it in notYetFailable with why)", target, s)
		case len(by) > 0 && listed:
			t.Errorf("%q is failed by %v now: remove it from notYetFailable", s, by)
		}
		cell := strings.Join(by, ", ")
		if len(by) == 0 {
			cell = "none yet: " + reason
		}
		rows = append(rows, fmt.Sprintf("| %s | %s |", strings.ReplaceAll(s, "_", " "), cell))
	}
	t.Logf("mutation coverage on %s (fixtures/README.md):\n| sentence | made to fail by |\n|---|---|\n%s", target, strings.Join(rows, "\n"))
}

// shortNames is "C3" for the tests a defect fails, "C3 (skip C1,C2)" when
// others say they could not judge.
func shortNames(f fixtures.Failures) string {
	short := func(tests []string) []string {
		var out []string
		for _, test := range tests {
			if strings.HasPrefix(test, "TestC") {
				out = append(out, test[4:6])
			} else {
				out = append(out, strings.TrimPrefix(test, "Test"))
			}
		}
		return out
	}
	failing, skipping := f.Split()
	fail, skip := short(failing), short(skipping)
	out := strings.Join(fail, ",")
	if len(fail) == 0 {
		out = "nothing"
	}
	if len(skip) > 0 {
		out += " (skip " + strings.Join(skip, ",") + ")"
	}
	return out
}
