package acceptance

// Checks shared by several C-tests. Each states one expectation; the probes
// in helpers/ read the machine.

import (
	"bytes"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/probe"
	"github.com/cc-ci/acceptance/helpers/remote"
	"github.com/cc-ci/acceptance/helpers/target"
	"github.com/cc-ci/acceptance/helpers/testrun"
	"github.com/cc-ci/acceptance/helpers/tlscheck"
	"github.com/cc-ci/acceptance/helpers/wait"
)

// installedMachine is the run's machine after a successful install, with an
// SSH connection closed when the test ends. After a failed install there is
// nothing to check on the machine: C4 fails on it, this check skips naming it.
func installedMachine(t *testing.T) (*machine.Machine, *remote.Client) {
	t.Helper()
	mc := run.Machine(t)
	run.RequireInstalled(t)
	cl, err := mc.SSH(run.Context())
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return mc, cl
}

// assertCreatedByThisRun: the machine is this run's own, new, in the right
// project, with the configured memory. On a machine the user asked to reuse
// it says why it does not apply (the run's evidence says it is not evidence).
func assertCreatedByThisRun(t *testing.T, mc *machine.Machine) {
	t.Helper()
	if why := run.NotCold(); why != "" {
		t.Logf("not checked that this run created %s: %s", mc.Name, why)
		return
	}
	cfg := run.Config
	in, err := run.Incus.Instance(run.Context(), mc.Project, mc.Name)
	require.NoError(t, err, "the machine must exist in Incus")
	labels := machine.Labels{Prefix: cfg.LabelPrefix}
	assert.Equal(t, run.ID, in.Config[labels.RunID()], "created by this run (run-id label)")
	assert.False(t, in.CreatedAt.Before(run.Started.Truncate(time.Second)),
		"created at %s, after this run started at %s", in.CreatedAt, run.Started)
	assert.Equal(t, cfg.Project, in.Project, "project")
	assert.Equal(t, cfg.InstanceType, in.Type, "instance type")
	assertMemory(t, "the machine", in.Config["limits.memory"], cfg.Memory)
}

// assertSecretsDecrypted: /run/secrets holds exactly the secrets the base
// declares, each with the content git holds, root-only.
func assertSecretsDecrypted(t *testing.T, cl *remote.Client, view *testrun.TargetView) {
	t.Helper()
	declared, err := target.DeclaredSecrets(view.Repos)
	require.NoError(t, err)
	names, err := probe.ListDir(run.Context(), cl, "/run/secrets")
	require.NoError(t, err)
	sort.Strings(names)
	assert.Equal(t, declared, names, "/run/secrets holds exactly the declared secrets")
	expect := map[string]fileExpectation{}
	for _, n := range declared {
		expect["/run/secrets/"+n] = fileExpectation{view.Secrets[n], "400"}
	}
	assertFiles(t, cl, expect)
}

// assertCertFilesFromGit: the certificate and key the proxy reads are the
// ones decrypted from git, with the modes a deployment gives them.
func assertCertFilesFromGit(t *testing.T, cl *remote.Client, view *testrun.TargetView) {
	t.Helper()
	assertFiles(t, cl, map[string]fileExpectation{
		"/var/lib/ci-certs/live/fullchain.pem": {view.Secrets["tls_fullchain"], "444"},
		"/var/lib/ci-certs/live/privkey.pem":   {view.Secrets["tls_privkey"], "400"},
	})
}

type fileExpectation struct{ value, mode string }

func assertFiles(t *testing.T, cl *remote.Client, expect map[string]fileExpectation) {
	t.Helper()
	paths := make([]string, 0, len(expect))
	for p := range expect {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	files, err := probe.Files(run.Context(), cl, paths)
	require.NoError(t, err)
	for _, f := range files {
		e := expect[f.Path]
		if !assert.NotEmpty(t, f.SHA256, "%s exists", f.Path) {
			continue
		}
		// Digests only: a secret never goes into an assertion message.
		assert.Equal(t, target.SHA256([]byte(e.value)), f.SHA256, "%s holds the value from git (sha256)", f.Path)
		assert.Equal(t, e.mode, f.Mode, "%s mode", f.Path)
	}
}

// assertServesGitCert: HTTPS for a name under the domain presents the leaf
// certificate from git, and it verifies against the configured roots.
func assertServesGitCert(t *testing.T, machineIP string, view *testrun.TargetView) {
	t.Helper()
	cfg := run.Config
	gitLeaf, err := tlscheck.FirstCert([]byte(view.Secrets["tls_fullchain"]))
	require.NoError(t, err, "the certificate in git parses")
	roots, err := tlscheck.Roots(cfg.TLSCA)
	require.NoError(t, err)
	addr := cfg.TLSAddr
	if addr == "" {
		addr = net.JoinHostPort(machineIP, "443")
	}
	sni := cfg.TLSServerName
	// A moment without a listener (a restart) is retried briefly: whether the
	// proxy stays up is C4's settle look, not one lucky connection.
	var served *tlscheck.Served
	err = wait.Eventually(run.Context(), "TLS on "+addr, 3*time.Second, func(bool) error {
		served, err = tlscheck.Fetch(run.Context(), addr, sni, roots)
		return err
	})
	require.NoError(t, err, "TLS answers on %s for %s", addr, sni)
	assert.True(t, bytes.Equal(gitLeaf.Raw, served.Leaf.Raw),
		"served leaf is the certificate from git: want %s, found %s (subject %q)",
		fingerprint(gitLeaf.Raw), fingerprint(served.Leaf.Raw), served.Leaf.Subject.CommonName)
	assert.NoError(t, served.VerifyErr, "the served chain verifies for %s", sni)
	t.Logf("TLS %s (SNI %s): leaf %s, subject %s, not after %s", addr, sni, fingerprint(served.Leaf.Raw),
		served.Leaf.Subject.CommonName, served.Leaf.NotAfter.Format(time.RFC3339))
	run.Note("served cert", "%s for %s at %s (git leaf %s)", fingerprint(served.Leaf.Raw), sni, addr, fingerprint(gitLeaf.Raw))
}

func fingerprint(der []byte) string { return "sha256:" + strings.ToLower(target.SHA256(der))[:16] }
