package acceptance

// Checks shared by several C-tests. Each states one expectation; the probes
// in helpers/ read the machine.

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/judge"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/probe"
	"github.com/cc-ci/acceptance/helpers/remote"
	"github.com/cc-ci/acceptance/helpers/size"
	"github.com/cc-ci/acceptance/helpers/target"
	"github.com/cc-ci/acceptance/helpers/testrun"
	"github.com/cc-ci/acceptance/helpers/tlscheck"
	"github.com/cc-ci/acceptance/helpers/wait"
)

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
	labels := machine.Labels{Prefix: cfg.Guardrails.LabelPrefix}
	assert.Equal(t, run.ID, in.Config[labels.RunID()], "created by this run (run-id label)")
	assert.False(t, in.CreatedAt.Before(run.Started.Truncate(time.Second)),
		"created at %s, after this run started at %s", in.CreatedAt, run.Started)
	assert.Equal(t, cfg.Machine.Project, in.Project, "project")
	assert.Equal(t, cfg.Machine.InstanceType, in.Type, "instance type")
	assertMemory(t, "the machine", in.Config["limits.memory"], cfg.Machine.Memory)
}

// assertSecretsDecrypted: every secret the target declares (sops.secrets of
// its NixOS configuration) is at its declared path — through symlinks and
// generation directories — with the value git holds, the declared mode and
// owners; and /run/secrets holds nothing the target does not declare.
func assertSecretsDecrypted(t *testing.T, m *testrun.Installed, view *testrun.TargetView) {
	t.Helper()
	decl := m.Declared(t)
	found, err := probe.Tree(run.Context(), m.SSH, declared.SecretsDir)
	require.NoError(t, err)
	judge.None(t, judge.OnlyDeclaredInSecretsDir(cTest(t), found, decl), judge.InstalledUndeclared)
	assertDeclaredFiles(t, m.SSH, view, decl.Secrets)
	var installed []judge.Installed
	for i, f := range filesAt(t, m.SSH, decl.Templates, func(tm declared.Template) string { return tm.Path }) {
		tm := decl.Templates[i] // its content is the target's own: no value to compare
		installed = append(installed, judge.Installed{What: "template " + tm.Name, Mode: tm.Mode, Owner: tm.Owner, Group: tm.Group, File: f})
	}
	judge.None(t, judge.InstalledFiles(cTest(t), installed), judge.InstalledMissing, judge.InstalledMode, judge.InstalledOwner)
}

// cTest is the plan's item the running test judges ("C3" of
// TestC3AllSecretsInGitOneException/…), for the problems it reports.
func cTest(t *testing.T) string {
	if name, ok := strings.CutPrefix(t.Name(), "Test"); ok && len(name) >= 2 && name[0] == 'C' {
		return name[:2]
	}
	return t.Name()
}

// filesAt probes the file at each item's path, in the items' order.
func filesAt[T any](t *testing.T, cl *remote.Client, items []T, path func(T) string) []probe.FileInfo {
	t.Helper()
	paths := make([]string, len(items))
	for i, it := range items {
		paths[i] = path(it)
	}
	files, err := probe.Files(run.Context(), cl, paths)
	require.NoError(t, err)
	return files
}

// assertCertFilesFromGit: the certificate and key the proxy reads are the
// ones decrypted from git, at the paths and with the modes the target
// declares for them.
func assertCertFilesFromGit(t *testing.T, m *testrun.Installed, view *testrun.TargetView) {
	t.Helper()
	chain, key := certPair(t, view)
	// By what sops-nix installs, not by name: a binary sops file's value is
	// the whole file, whatever key the declaration carries.
	var pair []declared.Secret
	found := map[string]bool{}
	for _, s := range m.Declared(t).Secrets {
		v, err := view.Value(s)
		for _, n := range []string{chain, key} {
			if err == nil && v == view.Secrets[n] {
				pair, found[n] = append(pair, s), true
			}
		}
	}
	require.True(t, found[chain] && found[key], "the target declares the certificate (%s) and its key (%s) as sops secrets", chain, key)
	assertDeclaredFiles(t, m.SSH, view, pair)
}

// certPair names the secrets that are the certificate chain and its key.
func certPair(t *testing.T, view *testrun.TargetView) (chain, key string) {
	t.Helper()
	chain, key, ok := tlscheck.Pair(view.Secrets, run.Config.Target.Domain)
	require.True(t, ok, "%s holds a PEM certificate chain and its private key", target.SecretsDoc)
	return chain, key
}

// assertDeclaredFiles: each secret's declared path holds the value of its
// key (digests only: a secret never goes into a message), with its mode and
// owners as declared.
func assertDeclaredFiles(t *testing.T, cl *remote.Client, view *testrun.TargetView, secrets []declared.Secret) {
	t.Helper()
	var installed []judge.Installed
	for i, f := range filesAt(t, cl, secrets, func(s declared.Secret) string { return s.Path }) {
		s := secrets[i]
		value, err := view.Value(s)
		if !assert.NoError(t, err, "secret %s: key %q of %s (format %s)", s.Name, s.Key, s.SopsFile, s.Format) {
			continue
		}
		installed = append(installed, judge.Installed{What: "secret " + s.Name, Key: s.Key, Mode: s.Mode, Owner: s.Owner, Group: s.Group,
			WantSHA256: target.SHA256([]byte(value)), File: f})
	}
	judge.None(t, judge.InstalledFiles(cTest(t), installed), judge.InstalledMissing, judge.InstalledValue, judge.InstalledMode, judge.InstalledOwner)
}

// assertServesGitCert: HTTPS for a name under the domain presents the leaf
// certificate from git, and it verifies against the configured roots.
func assertServesGitCert(t *testing.T, m *testrun.Installed, view *testrun.TargetView) {
	t.Helper()
	cfg := run.Config
	chain, _ := certPair(t, view)
	gitLeaf, err := tlscheck.FirstCert([]byte(view.Secrets[chain]))
	require.NoError(t, err, "the certificate in git parses")
	roots, err := tlscheck.Roots(cfg.Target.TLSCA)
	require.NoError(t, err)
	addr := m.TLSAddr(t)
	up := m.UpSince()
	for _, sni := range cfg.Target.TLSServerNames {
		// Until CCCI_TLS_READY after the install (a proxy may bind late),
		// later briefly (a restart): whether the proxy stays up is C4's
		// settle look, not one lucky connection.
		var served *tlscheck.Served
		err = wait.Eventually(run.Context(), "TLS on "+addr, cfg.Timeouts.TLSWait(up, time.Now()), func(bool) error {
			served, err = tlscheck.Fetch(run.Context(), addr, sni, roots)
			return err
		})
		if !assert.NoError(t, err, "TLS answers on %s for %s", addr, sni) {
			continue
		}
		assert.True(t, bytes.Equal(gitLeaf.Raw, served.Leaf.Raw),
			"served leaf is the certificate from git, for %s: want %s, found %s (subject %q)",
			sni, fingerprint(gitLeaf.Raw), fingerprint(served.Leaf.Raw), served.Leaf.Subject.CommonName)
		assert.NoError(t, served.VerifyErr, "the served chain verifies for %s", sni)
		t.Logf("TLS %s (SNI %s): leaf %s, subject %s, not after %s", addr, sni, fingerprint(served.Leaf.Raw),
			served.Leaf.Subject.CommonName, served.Leaf.NotAfter.Format(time.RFC3339))
		run.Note("served cert "+sni, "%s at %s (git leaf %s)", fingerprint(served.Leaf.Raw), addr, fingerprint(gitLeaf.Raw))
	}
}

// assertAnswers: every name the target serves answers GET / over HTTPS
// with a success status — a working cc-ci, not only a handshake (a proxy
// in front of a service that fails answers 5xx with the right certificate).
func assertAnswers(t *testing.T, m *testrun.Installed) {
	t.Helper()
	cfg := run.Config
	roots, err := tlscheck.Roots(cfg.Target.TLSCA)
	require.NoError(t, err)
	addr := m.TLSAddr(t)
	for _, name := range cfg.Target.TLSServerNames {
		page, err := tlscheck.GetPage(run.Context(), addr, name, cfg.Target.TLSServerNames, roots)
		if !assert.NoError(t, err, "%s answers over HTTPS", name) {
			continue
		}
		assert.True(t, page.OK(), "https://%s/ (at %s) answers with a success status: it answered %s (last URL %s)", name, addr, page.Text, page.URL)
		run.Note("served page "+name, "%s at %s: %s", page.URL, addr, page.Text)
	}
}

func fingerprint(der []byte) string { return "sha256:" + strings.ToLower(target.SHA256(der))[:16] }

// assertMemory: an instance's limits.memory, read as bytes, is one of want.
func assertMemory(t *testing.T, who, limit string, want ...int64) {
	t.Helper()
	n, err := size.Parse(limit)
	if !assert.NoError(t, err, "%s limits.memory %q", who, limit) {
		return
	}
	accepted := make([]string, len(want))
	for i, w := range want {
		accepted[i] = fmt.Sprintf("%s (%d bytes)", size.Format(w), w)
	}
	assert.Contains(t, want, n, "%s limits.memory is %q (%d bytes); accepted: %s", who, limit, n, strings.Join(accepted, ", "))
}
