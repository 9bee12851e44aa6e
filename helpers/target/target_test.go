package target

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/sopsfile"
)

func keyFile(t *testing.T, mode os.FileMode) (string, *age.X25519Identity) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "key.txt")
	require.NoError(t, os.WriteFile(p, []byte("# bootstrap\n"+id.String()+"\n"), mode))
	require.NoError(t, os.Chmod(p, mode))
	return p, id
}

// Bad age key files are refused before anything happens, naming the file.
func TestBadAgeKeyFilesAreRefused(t *testing.T) {
	good, _ := keyFile(t, 0o600)
	worldReadable, _ := keyFile(t, 0o644)
	notAKey := filepath.Join(t.TempDir(), "not-a-key.txt")
	require.NoError(t, os.WriteFile(notAKey, []byte("hello\n"), 0o600))
	cases := []struct{ name, path, want string }{
		{"missing", "/nonexistent/key.txt", "CCCI_AGE_KEY_FILE=/nonexistent/key.txt"},
		{"a directory", t.TempDir(), "is not a regular file"},
		{"readable by others", worldReadable, "readable by others (mode 0644): refusing"},
		{"not an age key", notAKey, "want exactly one age identity"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadAgeKey(tc.path, &redact.Redactor{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), tc.path)
		})
	}
	r := &redact.Redactor{}
	k, err := LoadAgeKey(good, r)
	require.NoError(t, err)
	assert.NotContains(t, r.Redact("key: "+k.Identity), k.Identity, "the key is registered for redaction")
}

// committed makes a git repo with one commit holding files (path → content)
// and symlinks (path → link target), and returns it as both of a target's repos.
func committed(t *testing.T, files, symlinks map[string]string) *Repos {
	t.Helper()
	dir := t.TempDir()
	for p, body := range files {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(body), 0o644))
	}
	for p, to := range symlinks {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		require.NoError(t, os.Symlink(to, filepath.Join(dir, p)))
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"},
		{"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c"}} {
		out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	head, err := gitOut(context.Background(), dir, "rev-parse", "HEAD")
	require.NoError(t, err)
	return &Repos{Base: dir, Secrets: dir, BaseCommit: head, SecretsCommit: head}
}

func secretsRepo(t *testing.T, body []byte) *Repos {
	t.Helper()
	return committed(t, map[string]string{SecretsDoc: string(body)}, nil)
}

// The target's files are read as committed: a symlink (to a host file, or
// to anywhere) is refused, naming the repo, commit and path; a file too
// large is refused; nothing outside the repo is ever read.
func TestCommittedFilesAreReadFromGitObjectsOnly(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "host-secret")
	require.NoError(t, os.WriteFile(secret, []byte("host-only-content"), 0o600))
	rp := committed(t, map[string]string{"instance.nix": "{ domain = \"x\"; }\n", "big": strings.Repeat("x", MaxFileSize+1)},
		map[string]string{D8Doc: secret, "docs/install.md": "../instance.nix"})

	text, err := ReadBase(rp, "instance.nix")
	require.NoError(t, err)
	assert.Contains(t, text, "domain")
	for _, p := range []string{D8Doc, "docs/install.md"} {
		text, err := ReadBase(rp, p)
		var ce *CommittedFileError
		require.ErrorAs(t, err, &ce, p)
		assert.Contains(t, err.Error(), p+": a symlink")
		assert.NotContains(t, text, "host-only-content")
	}
	_, err = ReadBase(rp, "big")
	assert.ErrorContains(t, err, "larger than")
	_, err = ReadBase(rp, "missing.md")
	assert.ErrorContains(t, err, "not committed")
	_, err = ReadBase(rp, "../outside")
	assert.ErrorContains(t, err, "not a path inside the repo")
}

// Bad secrets files are refused naming the file and the cause.
func TestBadSecretsFilesAreRefused(t *testing.T) {
	path, id := keyFile(t, 0o600)
	key, err := LoadAgeKey(path, &redact.Redactor{})
	require.NoError(t, err)
	enc, err := sopsfile.Encrypt([]byte("a: first-secret-value\nb: second-secret-value\n"), []string{id.Recipient().String()})
	require.NoError(t, err)

	_, err = Secrets(secretsRepo(t, enc), key, &redact.Redactor{})
	require.NoError(t, err, "the good file decrypts")

	// Swap two ciphertexts: each decrypts, the MAC does not match.
	lines := strings.Split(string(enc), "\n")
	lines[0], lines[1] = "a:"+strings.TrimPrefix(lines[1], "b:"), "b:"+strings.TrimPrefix(lines[0], "a:")
	_, err = Secrets(secretsRepo(t, []byte(strings.Join(lines, "\n"))), key, &redact.Redactor{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), SecretsDoc)
	assert.Contains(t, err.Error(), "does not authenticate")

	// Change the recorded modification time: the values hold, the MAC does not.
	altered := regexp.MustCompile(`lastmodified: "\d{4}`).ReplaceAllString(string(enc), `lastmodified: "1999`)
	require.NotEqual(t, string(enc), altered)
	_, err = Secrets(secretsRepo(t, []byte(altered)), key, &redact.Redactor{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), SecretsDoc)
	assert.Contains(t, err.Error(), "MAC mismatch")

	_, err = Secrets(secretsRepo(t, append([]byte("leaked: plain-value\n"), enc...)), key, &redact.Redactor{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), SecretsDoc+": values not encrypted: leaked")

	other, _ := keyFile(t, 0o600)
	wrong, err := LoadAgeKey(other, &redact.Redactor{})
	require.NoError(t, err)
	_, err = Secrets(secretsRepo(t, enc), wrong, &redact.Redactor{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no age identity given can decrypt")

	_, err = Secrets(secretsRepo(t, []byte("a: 1\n")), key, &redact.Redactor{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not sops-encrypted")
}

// What a server answers an anonymous client decides privacy; a server that
// cannot be reached decides nothing.
func TestAnonymousReadJudgesTheServersAnswer(t *testing.T) {
	for status, refused := range map[int]bool{401: true, 403: true, 404: true, 200: false} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			assert.Empty(t, r.Header.Get("Authorization"), "no credentials are sent")
			assert.Equal(t, "/s.git/info/refs", r.URL.Path)
			w.WriteHeader(status)
		}))
		// A URL's user info is not sent either (net/http would make it Basic auth).
		got, answer, err := AnonymousRead(context.Background(), Anonymous{URL: strings.Replace(srv.URL, "http://", "http://bot:pw@", 1) + "/s.git"})
		srv.Close()
		require.NoError(t, err, "status %d", status)
		assert.Equal(t, refused, got, "status %d", status)
		assert.Contains(t, answer, fmt.Sprint(status))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) }))
	_, _, err := AnonymousRead(context.Background(), Anonymous{URL: srv.URL + "/s.git"})
	srv.Close()
	assert.ErrorContains(t, err, "neither served nor refused: HTTP 502")
	_, _, err = AnonymousRead(context.Background(), Anonymous{URL: "http://127.0.0.1:1/s.git"})
	assert.ErrorContains(t, err, "cannot be reached")
}

// A D8 citation proves a live rebuild of this target only when the cited
// run judged the commit installed now, or an ancestor of it with only the
// D8 document changed since (where the citation itself is committed).
func TestACitationIsBoundToTheBaseCommitItJudged(t *testing.T) {
	rp := committed(t, map[string]string{"modules/proxy.sh": "v1\n", D8Doc: "## Live\n"}, nil)
	cited := rp.BaseCommit
	commit := func(path, body string) string {
		require.NoError(t, os.WriteFile(filepath.Join(rp.Base, path), []byte(body), 0o644))
		for _, args := range [][]string{{"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", path}} {
			out, err := exec.Command("git", append([]string{"-C", rp.Base}, args...)...).CombinedOutput()
			require.NoError(t, err, "%s", out)
		}
		head, err := gitOut(context.Background(), rp.Base, "rev-parse", "HEAD")
		require.NoError(t, err)
		return head
	}
	ctx := context.Background()
	require.NoError(t, OnlyChangedSince(ctx, rp, cited, D8Doc), "the very commit")

	rp.BaseCommit = commit(D8Doc, "## Live\n\nrun r20261130t000000-abcdef\n")
	require.NoError(t, OnlyChangedSince(ctx, rp, cited, D8Doc), "a descendant where only the D8 document changed")

	rp.BaseCommit = commit("modules/proxy.sh", "v2\n")
	err := OnlyChangedSince(ctx, rp, cited, D8Doc)
	require.Error(t, err, "code changed since the cited run")
	assert.Contains(t, err.Error(), "modules/proxy.sh changed, not only "+D8Doc)

	other := committed(t, map[string]string{"x": "y"}, nil)
	err = OnlyChangedSince(ctx, rp, other.BaseCommit, D8Doc)
	require.Error(t, err, "a commit of another repository")
	assert.Contains(t, err.Error(), "not in the history of the base repo")

	err = OnlyChangedSince(ctx, rp, "HEAD~1", D8Doc)
	assert.ErrorContains(t, err, "not a commit id", "what the chain records is input: validated before git sees it")
}

func TestOnlyACertificateChainIsPublicMaterial(t *testing.T) {
	cert := "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUJ2K3\n-----END CERTIFICATE-----\n"
	key := "-----BEGIN " + "PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEG\n-----END " + "PRIVATE KEY-----\n"
	assert.True(t, PublicMaterial(cert+cert), "a chain")
	assert.False(t, PublicMaterial(cert+key), "a chain with its key")
	assert.False(t, PublicMaterial(cert+"password=hunter2"), "a chain and something else")
	assert.False(t, PublicMaterial("a-plain-token-0123456789"))
	assert.False(t, PublicMaterial(""))
	assert.Equal(t, map[string]string{"k": key}, Private(map[string]string{"c": cert, "k": key}))
}

// A host's secrets may come from several sops files (sops.secrets.<name>.sopsFile):
// every sops file of the secrets repo is decrypted, its values named
// "<file>:<key>"; a file that is not sops is left to C1; one the key cannot
// decrypt is refused naming it.
func TestEverySopsFileOfTheSecretsRepoIsRead(t *testing.T) {
	path, id := keyFile(t, 0o600)
	key, err := LoadAgeKey(path, &redact.Redactor{})
	require.NoError(t, err)
	enc := func(plain string, to string) string {
		b, err := sopsfile.Encrypt([]byte(plain), []string{to})
		require.NoError(t, err)
		return string(b)
	}
	me := id.Recipient().String()
	rp := committed(t, map[string]string{
		SecretsDoc:         enc("a: first-secret-value\n", me),
		"secrets/tls.yaml": enc("cert: a-certificate-value\ndrone:\n  rpc: nested-secret-value\n", me),
		".sops.yaml":       "creation_rules: []\n",
		"README.md":        "not a sops file\n",
	}, nil)
	// The base's own sops files the bootstrap key opens (a credential the
	// host declares from its repo); not one encrypted to another key.
	other, _ := keyFile(t, 0o600)
	stranger, err := LoadAgeKey(other, &redact.Redactor{})
	require.NoError(t, err)
	base := committed(t, map[string]string{
		"bootstrap/access.sops.yaml": enc("secrets_repo_token: base-token-value-0123\n", me),
		"ops/elsewhere.sops.yaml":    enc("x: not-this-machines-0123\n", stranger.Recipient),
		"flake.nix":                  "{ }\n",
	}, nil)
	rp.Base, rp.BaseCommit = base.Base, base.BaseCommit
	r := &redact.Redactor{}
	vals, err := Secrets(rp, key, r)
	require.NoError(t, err)
	assert.Equal(t, "base-token-value-0123", vals[BasePrefix+SecretName("bootstrap/access.sops.yaml", "secrets_repo_token")])
	assert.NotContains(t, vals, BasePrefix+SecretName("ops/elsewhere.sops.yaml", "x"), "another key's file is no secret of this machine")
	assert.Equal(t, "first-secret-value", vals[SecretName(SecretsDoc, "a")])
	assert.Equal(t, "a-certificate-value", vals[SecretName("secrets/tls.yaml", "cert")])
	assert.Equal(t, "nested-secret-value", vals[SecretName("secrets/tls.yaml", "drone/rpc")], "sops-nix's nested key")
	assert.NotContains(t, r.Redact("x nested-secret-value"), "nested-secret-value", "registered for redaction")

	rp = committed(t, map[string]string{SecretsDoc: enc("a: first-secret-value\n", me),
		"secrets/other.yaml": enc("b: second-secret-value\n", stranger.Recipient)}, nil)
	_, err = Secrets(rp, key, &redact.Redactor{})
	assert.ErrorContains(t, err, "secrets repo secrets/other.yaml")
}

// A declared secret's value is what sops-nix installs for it (sops-install-
// secrets' decryptSecret): the string at its key (nested with "/") for yaml
// and json; the whole plaintext file for binary, dotenv and ini, and for
// yaml or json with key ""; from the secrets repo, or the base for a sops
// file the base keeps. What it decrypts is registered for redaction.
func TestADeclaredValueIsWhatSopsNixInstalls(t *testing.T) {
	id, enc := encrypter(t)
	cert := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	secrets := committed(t, map[string]string{
		SecretsDoc:         enc("drone:\n  rpc_secret: rpc-0123456789\n", "yaml"),
		"secrets/tls.bin":  enc(cert, "binary"),
		"secrets/app.json": enc(`{"bridge": {"hmac": "hmac-0123456789"}}`, "json"),
		"secrets/env":      enc("A=alpha-0123456789\n", "dotenv"),
	}, nil)
	base := committed(t, map[string]string{"bootstrap/access.sops.yaml": enc("secrets_repo_token: tok-0123456789\n", "yaml")}, nil)
	rp := &Repos{Base: base.Base, BaseCommit: base.BaseCommit, Secrets: secrets.Secrets, SecretsCommit: secrets.SecretsCommit}
	k := &AgeKey{Identity: id.String(), Recipient: id.Recipient().String()}
	known, err := sopsfile.Decrypt([]byte(enc("drone:\n  rpc_secret: rpc-0123456789\n", "yaml")), id.String())
	require.NoError(t, err)
	r := &redact.Redactor{}
	for _, c := range []struct{ file, format, key, want string }{
		{SecretsDoc, "yaml", "drone/rpc_secret", "rpc-0123456789"},
		{"secrets/tls.bin", "binary", "tls_fullchain", cert}, // the key is ignored
		{"secrets/app.json", "json", "bridge/hmac", "hmac-0123456789"},
		{"secrets/env", "dotenv", "A", "A=alpha-0123456789\n"},
		{"bootstrap/access.sops.yaml", "yaml", "secrets_repo_token", "tok-0123456789"},
	} {
		got, err := DeclaredValue(rp, k, known, c.file, c.format, c.key, r)
		require.NoError(t, err, "%s %s %s", c.file, c.format, c.key)
		assert.Equal(t, c.want, got, "%s %s %s", c.file, c.format, c.key)
	}
	whole, err := DeclaredValue(rp, k, known, SecretsDoc, "yaml", "", r)
	require.NoError(t, err)
	assert.Contains(t, whole, "rpc_secret: rpc-0123456789", `key = "": the whole file`)
	assert.NotContains(t, r.Redact("hmac-0123456789 tok-0123456789"), "0123456789", "what it decrypted is redacted")

	_, err = DeclaredValue(rp, k, known, SecretsDoc, "yaml", "drone/nope", r)
	assert.ErrorContains(t, err, `holds no key "drone/nope"`)
	_, err = DeclaredValue(rp, k, known, "secrets/none.yaml", "yaml", "x", r)
	assert.ErrorContains(t, err, "in neither repo")
}

// A dotenv or ini sops file is a sops file of the secrets repo (C1's tree)
// and a source of secrets (its values are searched for and redacted), read
// by its name as sops reads it.
func TestDotenvAndIniSopsFilesAreSecretsFiles(t *testing.T) {
	id, enc := encrypter(t)
	to := []string{id.Recipient().String()}
	rp := committed(t, map[string]string{
		SecretsDoc:           enc("a: alpha-0123456789\n", "yaml"),
		"secrets/drone.env":  enc("DRONE_RPC_SECRET=rpc-0123456789\n", "dotenv"),
		"secrets/bridge.ini": enc("[bridge]\nhmac = hmac-0123456789\n", "ini"),
		".sops.yaml":         "creation_rules:\n  - age: " + id.Recipient().String() + "\n",
	}, nil)
	problems, err := SecretsTreeProblems(context.Background(), rp)
	require.NoError(t, err)
	assert.Empty(t, problems)
	vals, err := Secrets(rp, &AgeKey{Identity: id.String(), Recipient: id.Recipient().String()}, &redact.Redactor{})
	require.NoError(t, err)
	assert.Equal(t, "rpc-0123456789", vals[SecretName("secrets/drone.env", "DRONE_RPC_SECRET")])
	assert.Equal(t, "hmac-0123456789", vals[SecretName("secrets/bridge.ini", "bridge.hmac")])
	rs, err := FileRecipients(rp, "secrets/drone.env")
	require.NoError(t, err)
	assert.Equal(t, to, rs)
}

// encrypter is a fresh age identity and a function encrypting a plain file
// of a format to it.
func encrypter(t *testing.T) (*age.X25519Identity, func(plain, format string) string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	return id, func(plain, format string) string {
		b, err := sopsfile.EncryptAs([]byte(plain), format, []string{id.Recipient().String()})
		require.NoError(t, err)
		return string(b)
	}
}
