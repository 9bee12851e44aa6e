package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mvdan.cc/sh/v3/syntax"

	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/installdoc/installdoctest"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/target"
)

func lint(t *testing.T, path string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = lintInstall(path, &out, &errb)
	return code, out.String(), errb.String()
}

func TestLintInstallPassesTheFixturesDocument(t *testing.T) {
	code, out, errs := lint(t, "../../fixtures/target/docs/install.md")
	require.Equal(t, 0, code, "stderr: %s", errs)
	assert.Contains(t, out, "5 steps a run takes")
	assert.Contains(t, out, "3. provision-age-key (../../fixtures/target/docs/install.md:33) by the operator")
}

// The parser's bad-input table (helpers/installdoc/testdata/malformed): each
// document fails lint, naming its line.
func TestLintInstallFailsEachMalformedDocument(t *testing.T) {
	for _, doc := range installdoctest.MalformedDocs(t) {
		t.Run(doc.Name, func(t *testing.T) {
			code, _, errs := lint(t, doc.Path)
			assert.Equal(t, 1, code)
			for _, w := range doc.Want {
				assert.Contains(t, errs, strings.Replace(w, "install.md:", doc.Name+":", 1))
			}
		})
	}
}

// guideExample is the guide's ````markdown example.
func guideExample(t *testing.T) []byte {
	t.Helper()
	guide, err := os.ReadFile("../../docs/writing-install-md.md")
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)\n````markdown\n(.*?)\n````\n").FindSubmatch(guide)
	require.NotNil(t, m, "the guide has a ````markdown example")
	return m[1]
}

// The guide's example is a document lint-install passes.
func TestTheGuidesExamplePasses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "install.md")
	require.NoError(t, os.WriteFile(path, guideExample(t), 0o644))
	code, out, errs := lint(t, path)
	require.Equal(t, 0, code, "stderr: %s", errs)
	assert.Contains(t, out, "5 steps a run takes")
	assert.Contains(t, out, "nixos-rebuild switch --flake")
}

func TestLintInstallRefusesASymlinkAndAMissingFile(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "install.md")
	require.NoError(t, os.Symlink("/etc/hostname", link))
	code, _, errs := lint(t, link)
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "install.md")
	code, _, errs = lint(t, filepath.Join(dir, "missing.md"))
	assert.Equal(t, 2, code)
	assert.Contains(t, errs, "missing.md")
}

// lint-target on the lab's targets, fetched as a run fetches them: the good
// one passes; a repo-level defect fails naming its cause; an unreachable
// repo is unusable input (2), not a problem of the target.
func TestLintTargetOnTheLabsTargets(t *testing.T) {
	cfg := labtest.Config(t)
	if !cfg.HasTarget() {
		labtest.Unavailable(t, "no target configured (make lab-up)")
	}
	gitBase := strings.TrimSuffix(cfg.Target.BaseRepoURL, "/good/cc-ci.git")
	run := func(name string) (int, string) {
		t.Setenv("CCCI_BASE_REPO_URL", gitBase+"/"+name+"/cc-ci.git")
		t.Setenv("CCCI_SECRETS_REPO_URL", gitBase+"/"+name+"/cc-ci-secrets.git")
		var out, errb bytes.Buffer
		code := lintTarget(&out, &errb)
		return code, out.String() + errb.String()
	}
	code, out := run("good")
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "0 problem(s)")
	code, out = run("decision-contradicts-linkage")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "DECISIONS.md records the linkage as [git submodule]")
	assert.Contains(t, out, "[C1, linkage-contradicted]", "the problem names its test and the rule's identifier")
	code, out = run("no-such-target")
	assert.Equal(t, 2, code, out)
}

// What a stock NixOS machine has on its PATH before anything is installed:
// nixos/modules/config/system-path.nix's requiredPackages (acl, attr,
// bashInteractive, bzip2, coreutils-full, cpio, curl, diffutils,
// findutils, gawk, getent, getconf, gnugrep, gnupatch, gnused, gnutar,
// gzip, xz, less, libcap, ncurses, netcat, openssh, mkpasswd, procps, su,
// time, util-linux, which, zstd) — their commands a guide would use —
// with nix and nixos-rebuild (nix-daemon.nix, installer/tools), and
// bash's builtins. Not git, not sops; and Nix's flakes and nix-command are
// off unless a command turns them on (nix.settings.experimental-features
// is empty by default).
var stockNixOS = strings.Fields(`install cp mv rm mkdir chmod chown cat base64 printf echo test [ true false
	env tee head tail cut tr sort uniq wc dirname basename mktemp sha256sum ln stat touch id sleep date
	find xargs awk grep sed tar gzip xz zstd bzip2 curl ssh scp ssh-keygen getent which less
	nix nix-shell nix-build nix-store nixos-rebuild
	cd export unset set read local source . exit return`)

// The guide's example runs on a stock NixOS image: every command of its
// machine steps is on a stock NixOS's PATH, or run through nix shell; every
// nix command turns flakes and nix-command on itself.
func TestTheGuidesExampleRunsOnAStockNixOS(t *testing.T) {
	vals := target.Placeholders("https://git.example/cc-ci.git", "https://git.example/cc-ci-secrets.git", "ci.example", "192.0.2.1", target.MachineStandIn)
	doc, err := installdoc.Parse("install.md", guideExample(t), vals)
	require.NoError(t, err)
	for _, b := range doc.Blocks {
		if b.Runs == installdoc.Operator {
			continue // run on the operator's own machine
		}
		f, err := syntax.NewParser().Parse(strings.NewReader(b.Raw), b.Step)
		require.NoError(t, err, "step %s", b.Step)
		syntax.Walk(f, func(n syntax.Node) bool {
			call, ok := n.(*syntax.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			var args []string
			for _, a := range call.Args {
				var w strings.Builder
				_ = syntax.NewPrinter().Print(&w, a)
				args = append(args, w.String())
			}
			assert.Contains(t, stockNixOS, args[0], "step %s runs %q, which a stock NixOS does not have (run it through nix shell)", b.Step, args[0])
			if args[0] == "nix" {
				i := slices.Index(args, "--extra-experimental-features")
				on := i > 0 && i+1 < len(args) && strings.Contains(args[i+1], "nix-command") && strings.Contains(args[i+1], "flakes")
				assert.True(t, on, "step %s: %q needs flakes and nix-command, off on a stock NixOS", b.Step, strings.Join(args, " "))
			}
			return true
		})
	}
}
