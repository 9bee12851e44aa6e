package leakscan

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const secret = "hmac-0123456789abcdef-s3cr3t"

func scanner(t *testing.T, secrets map[string]string) *Scanner {
	t.Helper()
	return New(Needles(secrets, 0, t.Logf))
}

func findIn(t *testing.T, s *Scanner, data []byte) []Finding {
	t.Helper()
	f, err := s.Reader("blob", bytes.NewReader(data))
	require.NoError(t, err)
	return f
}

func pemKey(t *testing.T) (string, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE " + "KEY", Bytes: der})), der
}

// Each encoding a leaked secret takes is found, and named.
func TestEveryVariantIsFound(t *testing.T) {
	s := scanner(t, map[string]string{"webhook_hmac": secret})
	wrap := func(b64 string, width int) string {
		var out strings.Builder
		for i := 0; i < len(b64); i += width {
			out.WriteString(b64[i:min(i+width, len(b64))] + "\n")
		}
		return out.String()
	}
	long := func(prefix int) []byte { // the secret inside a larger binary blob
		return append(append(bytes.Repeat([]byte{0x7f}, prefix), secret...), "-and-more-bytes-after-it"...)
	}
	cases := map[string]string{
		"raw":         "x=" + secret + ";",
		"hex":         hex.EncodeToString([]byte(secret)),
		"HEX":         strings.ToUpper(hex.EncodeToString([]byte(secret))),
		"percent":     "u=" + url.QueryEscape(secret+"/+ ="),
		"base64@0":    base64.StdEncoding.EncodeToString(long(30)),
		"base64@1":    base64.StdEncoding.EncodeToString(long(31)),
		"base64@2":    base64.StdEncoding.EncodeToString(long(32)),
		"base64url@1": base64.URLEncoding.EncodeToString(long(31)),
		"wrapped 76":  wrap(base64.StdEncoding.EncodeToString(long(40)), 76),
		"wrapped 64":  wrap(base64.StdEncoding.EncodeToString(long(41)), 64),
	}
	for name, blob := range cases {
		t.Run(name, func(t *testing.T) {
			got := findIn(t, s, []byte("before "+blob+" after"))
			require.NotEmpty(t, got, "secret as %s", name)
			assert.Equal(t, "webhook_hmac", got[0].Secret)
		})
	}
}

func TestMultiLineSecretsAndKeys(t *testing.T) {
	keyPEM, der := pemKey(t)
	s := scanner(t, map[string]string{"tls_privkey": keyPEM, "note": "line one of it\nline two of it\n"})
	t.Run("DER inside a binary", func(t *testing.T) {
		got := findIn(t, s, append(append([]byte{0, 1, 2, 0xff}, der...), 9, 9))
		require.NotEmpty(t, got)
		assert.Equal(t, "der", got[0].Variant)
	})
	t.Run("one PEM line with other line endings", func(t *testing.T) {
		lines := strings.Split(keyPEM, "\n")
		got := findIn(t, s, []byte(lines[2]+"\r\n"))
		require.NotEmpty(t, got)
	})
	t.Run("JSON-escaped newlines", func(t *testing.T) {
		got := findIn(t, s, []byte(`{"note":"line one of it\nline two of it"}`))
		var variants []string
		for _, f := range got {
			variants = append(variants, f.Variant)
		}
		assert.Contains(t, variants, "json-escaped")
	})
	for _, n := range s.needles { // booleans only: a key never goes into a message
		assert.False(t, bytes.Contains(n.Bytes, []byte("-----BEGIN")), "needle %s/%s carries the PEM armour", n.Secret, n.Variant)
	}
}

func TestFindingsNeverCarryTheSecret(t *testing.T) {
	s := scanner(t, map[string]string{"webhook_hmac": secret})
	got := findIn(t, s, []byte("xx "+secret))
	require.NotEmpty(t, got)
	assert.NotContains(t, got[0].String(), secret)
	assert.Equal(t, int64(3), got[0].Offset)
}

func TestDirScanWithCanaryAndSopsAllowList(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "a/b"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a/b/leak.env"), []byte("X="+secret+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "clean.txt"), []byte("nothing here\n"), 0o644))
	// A sops file (by its content, whatever its name) is allowed.
	sopsLike := "token: ENC[AES256_GCM,data:" + secret + ",type:str]\nsops:\n    mac: ENC[AES256_GCM,data:x]\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte(sopsLike), 0o644))
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(dir, "link")))

	got, st, err := scanner(t, map[string]string{"webhook_hmac": secret}).DirProven(context.Background(), dir)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, filepath.Join(dir, "a/b/leak.env"), got[0].Where)
	assert.True(t, st.Canary)
	assert.Equal(t, int64(1), st.Allowed)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), "canary", "the canary is removed after the scan")
	}
}

// On a read-only tree the canary is borrowed from a file already there.
func TestReadOnlyTreeBorrowsItsCanary(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 4096)
	_, _ = rand.Read(data)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "blob"), data, 0o444))
	require.NoError(t, os.Chmod(dir, 0o555))
	defer os.Chmod(dir, 0o755)
	if f, err := os.CreateTemp(dir, "probe"); err == nil { // root ignores modes
		f.Close()
		os.Remove(f.Name())
		t.Skip("running as root: cannot make a read-only directory this way")
	}
	_, st, err := scanner(t, map[string]string{"webhook_hmac": secret}).DirProven(context.Background(), dir)
	require.NoError(t, err)
	assert.True(t, st.Canary)
}

func gitRepo(t *testing.T) (string, func(args ...string) string) {
	dir := t.TempDir()
	run := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	run("init", "-q")
	return dir, run
}

func TestGitHistoryDeletedAndMergeOnlyContent(t *testing.T) {
	dir, git := gitRepo(t)
	write := func(name, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	write("README", "hello\n")
	git("add", ".")
	git("commit", "-qm", "init")
	// Committed, then deleted.
	write("leak.env", "SECRET="+secret+"\n")
	git("add", ".")
	git("commit", "-qm", "oops")
	git("rm", "-q", "leak.env")
	git("commit", "-qm", "remove")
	// Only in a merge commit: both sides clean, the resolution adds it.
	git("checkout", "-qb", "side")
	write("side.txt", "side\n")
	git("add", ".")
	git("commit", "-qm", "side")
	git("checkout", "-q", "main")
	git("merge", "-q", "--no-commit", "--no-ff", "side")
	write("merge-only.txt", "other="+hex.EncodeToString([]byte("merge-"+secret))+"\n")
	git("add", ".")
	git("commit", "-qm", "merge")

	s := scanner(t, map[string]string{"webhook_hmac": secret, "merge_secret": "merge-" + secret})
	got, st, err := s.Git(context.Background(), dir)
	require.NoError(t, err)
	assert.True(t, st.Canary)
	var where []string
	for _, f := range got {
		where = append(where, f.Secret+"@"+f.Where)
	}
	joined := strings.Join(where, "\n")
	assert.Contains(t, joined, "webhook_hmac@git object ")
	assert.Contains(t, joined, "(leak.env)", "the path is named when known")
	assert.Contains(t, joined, "merge_secret@git object ")
	assert.Contains(t, joined, "(merge-only.txt)")
}

// A large tree without secrets yields nothing: no false positives.
func TestNoFalsePositivesOnALargeCleanTree(t *testing.T) {
	keyPEM, _ := pemKey(t)
	secrets := map[string]string{"tls_privkey": keyPEM, "webhook_hmac": secret, "rpc": hex.EncodeToString([]byte("another secret value"))}
	dir := t.TempDir()
	rng := mrand.New(mrand.NewPCG(7, 8))
	words := strings.Fields("the quick brown fox jumps over lazy dog nix store path derivation secret key value")
	for i := 0; i < 200; i++ {
		var b bytes.Buffer
		for b.Len() < 64<<10 {
			if i%2 == 0 {
				b.WriteString(words[rng.IntN(len(words))] + " ")
			} else {
				var r [8]byte
				for j := range r {
					r[j] = byte(rng.UintN(256))
				}
				b.Write(r[:])
			}
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, big.NewInt(int64(i)).String()), b.Bytes(), 0o644))
	}
	got, st, err := scanner(t, secrets).DirProven(context.Background(), dir)
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.GreaterOrEqual(t, st.Bytes, int64(200*64<<10))
}

// Inside a sops file only its ciphertext is exempt: a value sops left
// unencrypted, one pasted beside the ciphertext, or one anywhere under
// sops: — under a key sops did not write, or under one it does (pgp's fp,
// kms's context, an age stanza: sops ignores them all) — is a leak.
func TestOnlyCiphertextOfASopsFileIsExempt(t *testing.T) {
	s := scanner(t, map[string]string{"webhook_hmac": secret})
	enc := "ENC[AES256_GCM,data:" + secret + ",iv:abc,tag:def,type:str]"
	stanza := "            -----BEGIN AGE ENCRYPTED FILE-----\n            YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBhYmNkZWYK\n            -----END AGE ENCRYPTED FILE-----\n"
	meta := "sops:\n    age:\n        - recipient: age1xyz\n          enc: |\n" + stanza + "    mac: " + enc + "\n    version: 3.13.3\n"
	rows := map[string]struct {
		content string
		leaks   int
	}{
		"secret only inside ENC[...]":                {"token: " + enc + "\n" + meta, 0},
		"an unencrypted value beside the ciphertext": {"token: " + enc + "\nhmac_unencrypted: " + secret + "\n" + meta, 1},
		"a comment quoting the secret":               {"# was " + secret + "\ntoken: " + enc + "\n" + meta, 1},
		"text after the sops block":                  {"token: " + enc + "\n" + meta + "debug: " + secret + "\n", 1},
		"not a sops file at all":                     {"token: " + secret + "\n", 1},
		// sops ignores a key under sops: it did not write: a value there is plaintext.
		"a key sops did not write, under sops:": {"token: " + enc + "\n" + meta + "    registry_password_backup: " + secret + "\n", 1},
		"its block-scalar value":                {"token: " + enc + "\n" + meta + "    notes: |\n        " + secret + "\n", 1},
		"a field's name under a foreign parent": {"token: " + enc + "\n" + meta + "    stash:\n        enc: " + secret + "\n", 1},
		"in a key entry":                        {"token: " + enc + "\nsops:\n    age:\n        - note: " + secret + "\n          recipient: age1xyz\n    mac: " + enc + "\n", 1},
		// … and so does it a value under a field it writes, not of its shape (the audit's).
		"pasted into an age stanza":  {"token: " + enc + "\nsops:\n    age:\n        - enc: |\n            -----BEGIN AGE ENCRYPTED FILE-----\n            " + secret + "\n            -----END AGE ENCRYPTED FILE-----\n          recipient: age1xyz\n    mac: " + enc + "\n", 1},
		"as a pgp key's fingerprint": {"token: " + enc + "\n" + meta + "    pgp:\n        - fp: " + secret + "\n", 1},
		"in a kms key's context":     {"token: " + enc + "\n" + meta + "    kms:\n        - context:\n            name: " + secret + "\n", 1},
	}
	for name, row := range rows {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte(row.content), 0o644))
			got, _, err := s.DirProven(context.Background(), dir)
			require.NoError(t, err)
			assert.Len(t, got, row.leaks, "findings: %v", got)
		})
	}
}
