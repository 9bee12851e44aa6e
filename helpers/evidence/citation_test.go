package evidence

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/remote"
	"github.com/cc-ci/acceptance/helpers/sshsig"
)

func TestCitedRunsAreRunIDsInOrderOnce(t *testing.T) {
	text := "### Live rebuild, run r20261129t001234-abcdef\n- see run r20261129t001234-abcdef and r20261128t230000-0f0f0f;" +
		" not an id: r2026-1, rx20261129t001234-abcdef, r20261129t001234-abcdefg"
	assert.Equal(t, []string{"r20261129t001234-abcdef", "r20261128t230000-0f0f0f"}, CitedRuns(text))
	assert.Empty(t, CitedRuns("## Live runs\n\n(none yet)"))
}

// Each way a cited run can fail to prove a live rebuild is named.
func TestACitedRunMustBeARecentColdPassOfC4(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	good := Entry{RunID: "r20261129t100000-aaaaaa", Time: "2026-11-29T10:00:00Z", Outcome: "pass", Machine: "terraform-ci/ccci-x",
		Destroy: DestroyedAndGone, Tests: []Test{{Name: LiveRebuildTest, Result: "pass"}, {Name: "TestC1SecretsRepoSplit", Result: "fail"}}}
	with := func(f func(*Entry)) []Entry {
		e := good
		e.Tests = append([]Test(nil), good.Tests...)
		f(&e)
		return []Entry{e}
	}

	e, err := ProvesLiveRebuild([]Entry{good}, good.RunID, now, 24*time.Hour)
	require.NoError(t, err, "a C4 pass on a created machine, 2h old (other tests' results do not matter)")
	assert.Equal(t, good.Machine, e.Machine)

	for _, c := range []struct {
		name  string
		chain []Entry
		want  string
	}{
		{"absent", nil, "not in the evidence chain"},
		{"reused machine", with(func(e *Entry) { e.Machine = "" }), "created no machine"},
		// An install refused before its machine: every reason, not the first.
		{"no machine, C4 skipped", with(func(e *Entry) { e.Machine, e.Tests[0].Result = "", "skip" }),
			`created no machine (neither a reused machine nor none at all is a cold rebuild); TestC4GenuineLiveRebuild did not pass (recorded "skip")`},
		{"kept machine", with(func(e *Entry) { e.Destroy = "kept (SKIP_teardown=1)" }), `its machine was not destroyed and proven gone (destroy: "kept (SKIP_teardown=1)")`},
		{"teardown failed", with(func(e *Entry) { e.Destroy = "FAILED: timeout" }), "not destroyed and proven gone"},
		{"C4 failed", with(func(e *Entry) { e.Tests[0].Result = "fail" }), `TestC4GenuineLiveRebuild did not pass (recorded "fail")`},
		{"C4 not run", with(func(e *Entry) { e.Tests = e.Tests[1:] }), "did not pass (recorded \"\")"},
		{"C4's end of run failed", with(func(e *Entry) {
			e.Tests = append(e.Tests, Test{Name: "TestC4GenuineLiveRebuildToTheEnd", Result: "fail"})
		}), `TestC4GenuineLiveRebuildToTheEnd did not pass (recorded "fail")`},
		{"interrupted", with(func(e *Entry) { e.Interrupted = "interrupted by SIGINT" }), "was interrupted (interrupted by SIGINT)"},
		{"too old", with(func(e *Entry) { e.Time = "2026-11-28T10:00:00Z" }), "recorded 26h0m0s ago, more than 24h0m0s"},
		{"future", with(func(e *Entry) { e.Time = "2026-11-30T10:00:00Z" }), "in the future"},
		{"bad time", with(func(e *Entry) { e.Time = "yesterday" }), `its time "yesterday" is not RFC 3339`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ProvesLiveRebuild(c.chain, good.RunID, now, 24*time.Hour)
			var ce *CitationError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, good.RunID, ce.RunID)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

// A citation must also be signed by an allowed key and have run on this
// Incus: a hash chain alone can be extended by anyone who can write it.
func TestACitedRunIsSignedByAnAllowedKeyOnThisIncus(t *testing.T) {
	runner, _, err := remote.NewKey()
	require.NoError(t, err)
	stranger, _, err := remote.NewKey()
	require.NoError(t, err)
	allowed, err := sshsig.AllowedSigners([]byte("runner@cc-ci namespaces=\"" + Namespace + "\" " + string(ssh.MarshalAuthorizedKey(runner.PublicKey()))))
	require.NoError(t, err)
	now := time.Now().UTC()
	const serverA, serverB = "aaaa1111bbbb2222cccc3333dddd4444eeee5555ffff6666aaaa7777bbbb8888", "bbbb1111cccc2222dddd3333eeee4444ffff5555aaaa6666bbbb7777cccc8888"
	entryOn := func(signer ssh.Signer, incus, cert string) []Entry {
		p := PathsFor(filepath.Join(t.TempDir(), "REVIEW.md"))
		_, err := Append(p, Entry{RunID: "r20261130t100000-aaaaaa", Time: now.Add(-time.Hour).Format(time.RFC3339), Incus: incus, IncusCert: cert,
			Machine: "terraform-ci/ccci-x", Destroy: DestroyedAndGone, Tests: []Test{{Name: LiveRebuildTest, Result: "pass"}}}, signer)
		require.NoError(t, err)
		es, err := Chain(p.JSONL)
		require.NoError(t, err)
		return es
	}
	entry := func(signer ssh.Signer, incus string) []Entry { return entryOn(signer, incus, serverA) }
	bind := Binding{Incus: "https://b1:8443", IncusCert: serverA, Allowed: allowed}
	_, err = ProvesLiveRebuildFor(entry(runner, "https://b1:8443"), "r20261130t100000-aaaaaa", now, 24*time.Hour, bind)
	require.NoError(t, err)
	for _, c := range []struct {
		name  string
		chain []Entry
		bind  Binding
		want  string
	}{
		{"unsigned", entry(nil, "https://b1:8443"), bind, "not signed by an allowed key: unsigned"},
		{"signed by a stranger", entry(stranger, "https://b1:8443"), bind, "which allowed_signers does not list"},
		{"no allowed signers", entry(runner, "https://b1:8443"), Binding{Incus: "https://b1:8443"}, "no allowed signers are configured"},
		{"another Incus", entry(runner, "https://127.0.0.1:8443"), bind, `ran against Incus "https://127.0.0.1:8443", not "https://b1:8443"`},
		// The same address, another server (a name moved, a member replaced): its certificate tells.
		{"another server at the address", entryOn(runner, "https://b1:8443", serverB), bind, "ran against the Incus server with certificate bbbb1111cccc2222…, not aaaa1111bbbb2222…"},
		{"an entry naming no server", entryOn(runner, "https://b1:8443", ""), bind, "names no Incus server certificate"},
		{"a server that names no certificate", entry(runner, "https://b1:8443"), Binding{Incus: "https://b1:8443", Allowed: allowed}, "reported no certificate fingerprint"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ProvesLiveRebuildFor(c.chain, "r20261130t100000-aaaaaa", now, 24*time.Hour, c.bind)
			var ce *CitationError
			require.ErrorAs(t, err, &ce)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	assert.Equal(t, "https://git.example/cc-ci.git", RepoURL("https://ci:s3cr3t@git.example/cc-ci.git"), "no credentials in evidence")
}
