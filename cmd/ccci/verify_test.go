package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/evidence"
	"github.com/cc-ci/acceptance/helpers/remote"
	"github.com/cc-ci/acceptance/helpers/sshsig"
)

func newKey(t *testing.T) ssh.Signer {
	s, _, err := remote.NewKey()
	require.NoError(t, err)
	return s
}

// signedChain writes three runs signed by the runner's key and an
// allowed_signers file that lists it.
func signedChain(t *testing.T) (dir string, runner ssh.Signer) {
	dir, runner = t.TempDir(), newKey(t)
	p := evidence.PathsFor(filepath.Join(dir, "REVIEW.md"))
	for _, id := range []string{"r1", "r2", "r3"} {
		_, err := evidence.Append(p, evidence.Entry{RunID: id, Outcome: "pass", Tests: []evidence.Test{{Name: "TestC4GenuineLiveRebuild", Result: "pass"}}}, runner)
		require.NoError(t, err)
	}
	allowed := "runner@cc-ci namespaces=\"" + evidence.Namespace + "\" " + string(ssh.MarshalAuthorizedKey(runner.PublicKey()))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "allowed_signers"), []byte(allowed), 0o644))
	return dir, runner
}

func runVerify(t *testing.T, dir string, extra ...string) (int, string) {
	var out, errb bytes.Buffer
	code := verify(append(extra, filepath.Join(dir, "allowed_signers"), filepath.Join(dir, "REVIEW.jsonl")), &out, &errb)
	return code, out.String() + errb.String()
}

func lines(t *testing.T, dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "REVIEW.jsonl"))
	require.NoError(t, err)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func rewrite(t *testing.T, dir string, ls []string) {
	require.NoError(t, os.WriteFile(filepath.Join(dir, "REVIEW.jsonl"), []byte(strings.Join(ls, "\n")+"\n"), 0o644))
}

func TestVerifyAcceptsASignedChainAndPrintsEachVerdict(t *testing.T) {
	dir, runner := signedChain(t)
	code, out := runVerify(t, dir)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "entry 2 (run r2)")
	assert.Contains(t, out, "PASS — runner@cc-ci "+ssh.FingerprintSHA256(runner.PublicKey()))
	assert.Contains(t, out, "3 entries, chained and signed")
}

// Each kind of tampering is rejected, naming the entry.
func TestVerifyRejectsEachKindOfTampering(t *testing.T) {
	for _, c := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
		want   string
	}{
		{"a result changed", func(t *testing.T, dir string) {
			ls := lines(t, dir)
			ls[1] = strings.Replace(ls[1], `"outcome":"pass"`, `"outcome":"fail"`, 1)
			rewrite(t, dir, ls)
		}, "entry 2 (run r2): REJECTED: content changed"},
		{"entries reordered", func(t *testing.T, dir string) {
			ls := lines(t, dir)
			ls[1], ls[2] = ls[2], ls[1]
			rewrite(t, dir, ls)
		}, "entry 2 (run r3): REJECTED: chain broken"},
		{"an entry removed", func(t *testing.T, dir string) {
			ls := lines(t, dir)
			rewrite(t, dir, append(ls[:1], ls[2]))
		}, "entry 2 (run r3): REJECTED: chain broken"},
		{"an unsigned entry", func(t *testing.T, dir string) {
			_, err := evidence.Append(evidence.PathsFor(filepath.Join(dir, "REVIEW.md")), evidence.Entry{RunID: "r4", Outcome: "pass"}, nil)
			require.NoError(t, err)
		}, "entry 4 (run r4): REJECTED: unsigned"},
		{"signed by a key not allowed", func(t *testing.T, dir string) {
			_, err := evidence.Append(evidence.PathsFor(filepath.Join(dir, "REVIEW.md")), evidence.Entry{RunID: "r4", Outcome: "pass"}, newKey(t))
			require.NoError(t, err)
		}, "entry 4 (run r4): REJECTED: signed by SHA256:"},
		{"a signature copied from another entry", func(t *testing.T, dir string) {
			ls := lines(t, dir)
			var e1, e2 map[string]any
			require.NoError(t, json.Unmarshal([]byte(ls[0]), &e1))
			require.NoError(t, json.Unmarshal([]byte(ls[1]), &e2))
			e2["sig"] = e1["sig"]
			b, _ := json.Marshal(e2)
			ls[1] = string(b)
			rewrite(t, dir, ls)
		}, "entry 2 (run r2): REJECTED: sshsig: the signature does not match the message"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, _ := signedChain(t)
			c.tamper(t, dir)
			code, out := runVerify(t, dir)
			assert.Equal(t, 1, code, out)
			assert.Contains(t, out, c.want)
		})
	}
}

func TestVerifyTakesEntriesBeforeSigningWithSince(t *testing.T) {
	dir, runner := t.TempDir(), newKey(t)
	p := evidence.PathsFor(filepath.Join(dir, "REVIEW.md"))
	for i, s := range []ssh.Signer{nil, nil, runner} {
		_, err := evidence.Append(p, evidence.Entry{RunID: "r" + string(rune('1'+i)), Outcome: "pass"}, s)
		require.NoError(t, err)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "allowed_signers"), []byte("ci "+string(ssh.MarshalAuthorizedKey(runner.PublicKey()))), 0o644))
	code, out := runVerify(t, dir)
	assert.Equal(t, 1, code, "unsigned entries are rejected by default")
	code, out = runVerify(t, dir, "-since", "r3")
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "(unsigned, before r3)")
	code, out = runVerify(t, dir, "-since", "r9")
	assert.Equal(t, 2, code)
	assert.Contains(t, out, "has no run r9")
}

// What docs/reviewing.md tells a reviewer without this tool: OpenSSH
// verifies an entry's signature over its hash.
func TestSSHKeygenVerifiesAnEntry(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen is not installed")
	}
	dir, _ := signedChain(t)
	entries, err := evidence.Read(filepath.Join(dir, "REVIEW.jsonl"))
	require.NoError(t, err)
	armoured, err := sshsig.Armour(entries[1].Sig)
	require.NoError(t, err)
	sig := filepath.Join(dir, "entry.sig")
	require.NoError(t, os.WriteFile(sig, armoured, 0o644))
	check := func(message string) error {
		cmd := exec.Command(keygen, "-Y", "verify", "-f", filepath.Join(dir, "allowed_signers"), "-I", "runner@cc-ci",
			"-n", evidence.Namespace, "-s", sig)
		cmd.Stdin = strings.NewReader(message)
		return cmd.Run()
	}
	assert.NoError(t, check(entries[1].Hash), "ssh-keygen -Y verify accepts the entry's signature over its hash")
	assert.Error(t, check(entries[0].Hash), "… and not over another entry's")
}

// A chain that is missing or empty proves nothing: verify fails on it.
func TestVerifyFailsOnAMissingOrEmptyChain(t *testing.T) {
	dir, _ := signedChain(t)
	require.NoError(t, os.Remove(filepath.Join(dir, "REVIEW.jsonl")))
	code, out := runVerify(t, dir)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "no entries (missing or empty)")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "REVIEW.jsonl"), nil, 0o644))
	code, out = runVerify(t, dir)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "no entries (missing or empty)")
}

// Removing the last entries leaves a valid chain: only a reviewer who noted
// the head sees it. verify prints the head; -head checks it is still there.
func TestVerifyWithANotedHeadDetectsEntriesRemovedAfterIt(t *testing.T) {
	dir, _ := signedChain(t)
	code, out := runVerify(t, dir)
	require.Equal(t, 0, code, out)
	ls := lines(t, dir)
	var last evidence.Entry
	require.NoError(t, json.Unmarshal([]byte(ls[len(ls)-1]), &last))
	assert.Contains(t, out, "head "+last.Hash[:16], "verify prints the head to note")

	code, out = runVerify(t, dir, "-head", last.Hash[:16])
	assert.Equal(t, 0, code, "the noted head is there: %s", out)

	rewrite(t, dir, ls[:2]) // the last run removed: what is left still chains
	code, out = runVerify(t, dir)
	assert.Equal(t, 0, code, "without -head the shortened chain verifies: %s", out)
	code, out = runVerify(t, dir, "-head", last.Hash[:16])
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "no entry has this hash")

	code, out = runVerify(t, dir, "-head", "r3")
	assert.Equal(t, 2, code, "a head that is not a hash is bad input: %s", out)
}

// A chain kept in git has its heads recorded outside the file: a tail cut
// after a commit fails verify with no head kept by hand, naming the commit
// whose head is gone; -history-from accepts a rewrite before a commit, and
// says so in the command line a reviewer reads.
func TestACutTailOfACommittedChainIsRejected(t *testing.T) {
	dir, _ := signedChain(t)
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", "REVIEW.jsonl")
	git("commit", "-qm", "three runs")
	first := git("rev-parse", "HEAD")
	code, out := runVerify(t, dir)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "the heads of its 1 committed versions are all in it")

	rewrite(t, dir, lines(t, dir)[:2]) // the last run cut away, and committed
	git("commit", "-qam", "cut")
	code, out = runVerify(t, dir)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "(committed in "+first[:12]+"): REJECTED: no entry has this hash")

	code, out = runVerify(t, dir, "-history-from", "HEAD")
	assert.Equal(t, 0, code, "the rewrite before HEAD accepted: %s", out)
	code, out = runVerify(t, dir, "-history-from", "no-such-commit")
	assert.Equal(t, 2, code, out)
}
