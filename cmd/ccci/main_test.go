package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/installdoc/installdoctest"
	"github.com/cc-ci/acceptance/helpers/labtest"
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

// The guide's example is a document lint-install passes.
func TestTheGuidesExamplePasses(t *testing.T) {
	guide, err := os.ReadFile("../../docs/writing-install-md.md")
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)\n````markdown\n(.*?)\n````\n").FindSubmatch(guide)
	require.NotNil(t, m, "the guide has a ````markdown example")
	path := filepath.Join(t.TempDir(), "install.md")
	require.NoError(t, os.WriteFile(path, m[1], 0o644))
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
