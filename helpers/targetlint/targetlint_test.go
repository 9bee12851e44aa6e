package targetlint

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"maps"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/fixtures"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/gitserver"
	"github.com/cc-ci/acceptance/helpers/judge"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/target"
)

// lab serves a directory of targets as the lab does: git over HTTP (a
// repo with a token file private) and over SSH to its deploy keys.
type lab struct {
	root, http string
	o          fixtures.FlavourOptions
}

func newLab(t *testing.T) *lab {
	t.Helper()
	root := t.TempDir()
	srv := httptest.NewServer(&gitserver.Server{Root: root, TokenFile: fixtures.TokenFile, Log: t.Logf})
	t.Cleanup(srv.Close)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	host, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		_ = (&gitserver.SSHServer{Root: root, DeployKeysFile: fixtures.DeployKeysFile, TokenFile: fixtures.TokenFile, HostKey: host, Log: t.Logf}).Serve(l)
	}()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	return &lab{root: root, http: srv.URL, o: fixtures.FlavourOptions{HTTPBase: srv.URL, SSHBase: "ssh://git@127.0.0.1:" + port,
		SSHHostKey: string(ssh.MarshalAuthorizedKey(host.PublicKey())), SSHHostPort: "[127.0.0.1]:" + port}}
}

// lint fetches a generated target as a run would (from the lab's server,
// with the target's own settings.env, a flavour's) and lints it.
func (l *lab) lint(t *testing.T, tg *fixtures.Target) []judge.Problem {
	t.Helper()
	name := filepath.Base(tg.Dir)
	settings := map[string]string{"CCCI_BASE_REPO_URL": l.http + "/" + name + "/cc-ci.git", "CCCI_SECRETS_REPO_URL": l.http + "/" + name + "/cc-ci-secrets.git"}
	if _, err := os.Stat(filepath.Join(tg.Dir, fixtures.SettingsFile)); err == nil {
		own, err := config.SettingsFile(filepath.Join(tg.Dir, fixtures.SettingsFile))
		require.NoError(t, err)
		maps.Copy(settings, own)
	}
	cfg, err := config.LoadFrom(func(k string) (string, bool) { v, ok := settings[k]; return v, ok }) // the defaults, and these
	require.NoError(t, err)
	cfg.Expect.RequiredSecrets = []string{"drone_rpc_secret", "registry_password"}
	cfg.Expect.CertMinDays, cfg.Expect.ForbiddenPhrases, cfg.Expect.StalePhrases = 14, []string{"infeasible by design"}, []string{"operator drops", "drops the cert"}
	var r redact.Redactor
	key, err := target.LoadAgeKey(tg.BootstrapKeyFile(), &r)
	require.NoError(t, err)
	rp, err := target.Fetch(context.Background(), t.TempDir(), cfg.Target, key, &r)
	require.NoError(t, err)
	secrets, serr := target.Secrets(rp, key, &r)
	return Check(context.Background(), Target{Repos: rp, Secrets: secrets, SecretsErr: serr, Key: key}, cfg,
		target.Placeholders("b", "s", "ci.lab.test", "10.99.0.1", "m"))
}

// The good target has no problem; each repo-level defect has one naming
// its cause — found with no machine and no Incus.
func TestEveryRepoLevelDefectIsFoundWithoutAMachine(t *testing.T) {
	for _, tool := range []string{"git", "nix"} {
		if _, err := exec.LookPath(tool); err != nil {
			labtest.Unavailable(t, tool+" not installed (make lab-up installs it)")
		}
	}
	l := newLab(t)
	good, err := fixtures.Generate(fixtures.Options{Dir: filepath.Join(l.root, "good"), Domain: "ci.lab.test", Gateway: "10.99.0.1",
		SecretsInputURL: "git+file:///root/cc-ci-secrets", Now: time.Now()})
	require.NoError(t, err)
	assert.Empty(t, l.lint(t, good), "the good target")
	for _, f := range fixtures.Flavours() {
		tg, err := fixtures.GenerateFlavour(good, f, filepath.Join(l.root, f), l.o)
		require.NoError(t, err)
		assert.Empty(t, l.lint(t, tg), "the flavour %s", f)
	}

	// What each repo-level defect breaks (the catalogue entry's lintFinds),
	// by the rule's identifier (and, where the identifier is shared by
	// several rules, what it names).
	repoLevel := fixtures.LintFinds()
	// The same defects made on a flavour, in its words.
	onFlavour := map[string]string{
		"good-submodule+decision-contradicts-linkage": "records the linkage as [flake input], but the base pins the secrets repo as a git submodule",
	}
	made := map[string]func(dir string) (*fixtures.Target, error){}
	for name := range repoLevel {
		made[name] = func(dir string) (*fixtures.Target, error) { return fixtures.GenerateDefect(good, name, dir) }
	}
	for _, name := range fixtures.FlavourDefects() {
		flavour, defect, _ := fixtures.SplitOnFlavour(name)
		if want, ok := repoLevel[defect]; ok {
			if own, ok := onFlavour[name]; ok {
				want = own
			}
			repoLevel[name] = want
			made[name] = func(dir string) (*fixtures.Target, error) {
				return fixtures.GenerateDefectOn(good, flavour, defect, dir, l.o)
			}
		}
	}
	for name, want := range repoLevel {
		t.Run(name, func(t *testing.T) {
			tg, err := made[name](filepath.Join(l.root, name))
			require.NoError(t, err)
			var all []string
			for _, p := range l.lint(t, tg) {
				all = append(all, p.String())
			}
			assert.Contains(t, strings.Join(all, "\n"), want, "the problems of %s", name)
		})
	}
}
