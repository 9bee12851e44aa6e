// Package target is the harness's view of the cc-ci target under test: its
// two repos (fetched the way a machine fetches them), its secrets (decrypted
// in memory with the bootstrap key), and the operator's one out-of-band action.
package target

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/gitexec"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/remote"
	"github.com/cc-ci/acceptance/helpers/sopsfile"
)

// Paths in the base repo.
const (
	InstallDoc = "docs/install.md"
	SecretsDoc = "secrets/secrets.yaml"
)

// AgeKey is the bootstrap key as the operator holds it.
type AgeKey struct {
	Path      string
	Identity  string // the age identity string (never printed)
	Recipient string
	File      []byte // the file as the operator would copy it
}

// LoadAgeKey reads the operator's key file. A key readable by group or others
// is refused: the harness will not handle a key kept carelessly.
func LoadAgeKey(path string, r *redact.Redactor) (*AgeKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("age key CCCI_AGE_KEY_FILE=%s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("age key CCCI_AGE_KEY_FILE=%s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("age key CCCI_AGE_KEY_FILE=%s is readable by others (mode %04o): refusing; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("age key CCCI_AGE_KEY_FILE=%s: %w", path, err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil || len(ids) != 1 {
		return nil, fmt.Errorf("age key CCCI_AGE_KEY_FILE=%s: want exactly one age identity (AGE-SECRET-KEY-…): %v", path, err)
	}
	x, ok := ids[0].(*age.X25519Identity)
	if !ok {
		return nil, fmt.Errorf("age key CCCI_AGE_KEY_FILE=%s: not an X25519 identity", path)
	}
	r.Add("bootstrap-age-key", []byte(x.String()))
	return &AgeKey{Path: path, Identity: x.String(), Recipient: x.Recipient().String(), File: b}, nil
}

// Repos are local bare clones of the target's two repos, and the commits
// the machine will install.
type Repos struct {
	Base, Secrets             string // git directories (bare: no work tree)
	BaseCommit, SecretsCommit string
	AccessToken               string // the secrets repo's read token (a secret: registered for redaction)
}

// Fetch clones both repos into dir the way install.md does: the base
// publicly, the secrets repo with the read token decrypted from the base
// (the sops file CCCI_SECRETS_ACCESS_FILE, its key CCCI_SECRETS_ACCESS_KEY).
func Fetch(ctx context.Context, dir string, cfg config.Target, key *AgeKey, r *redact.Redactor) (*Repos, error) {
	baseURL, secretsURL := cfg.BaseRepoURL, cfg.SecretsRepoURL
	rp := &Repos{Base: filepath.Join(dir, "cc-ci.git"), Secrets: filepath.Join(dir, "cc-ci-secrets.git")}
	if err := clone(ctx, nil, baseURL, rp.Base); err != nil {
		return nil, fmt.Errorf("fetch base repo %s: %w", baseURL, err)
	}
	var err error
	if rp.BaseCommit, err = gitOut(ctx, rp.Base, "rev-parse", "--verify", "HEAD^{commit}"); err != nil {
		return nil, fmt.Errorf("base repo %s: %w", baseURL, err)
	}
	access, err := rp.readBase(ctx, cfg.AccessFile)
	if err != nil {
		return nil, fmt.Errorf("base repo (CCCI_SECRETS_ACCESS_FILE): %w", err)
	}
	vals, err := sopsfile.Decrypt(access, key.Identity)
	if err != nil {
		return nil, fmt.Errorf("base repo %s: decrypt with the bootstrap key: %w", cfg.AccessFile, err)
	}
	tok := vals[cfg.AccessKey]
	if tok == "" {
		return nil, fmt.Errorf("base repo %s: no %s (CCCI_SECRETS_ACCESS_KEY)", cfg.AccessFile, cfg.AccessKey)
	}
	r.Add("secrets-repo-token", []byte(tok))
	rp.AccessToken = tok
	env, done, err := credentialEnv(dir, tok, cfg.SecretsKnownHosts, r)
	if err != nil {
		return nil, fmt.Errorf("base repo %s, key %s: %w", cfg.AccessFile, cfg.AccessKey, err)
	}
	err = clone(ctx, env, secretsURL, rp.Secrets)
	done()
	if err != nil {
		return nil, fmt.Errorf("fetch secrets repo %s: %w", secretsURL, r.RedactError(err))
	}
	if rp.SecretsCommit, err = gitOut(ctx, rp.Secrets, "rev-parse", "--verify", "HEAD^{commit}"); err != nil {
		return nil, fmt.Errorf("secrets repo %s: %w", secretsURL, err)
	}
	return rp, nil
}

// credentialEnv is the environment a clone of the secrets repo needs for
// the credential the base holds: an HTTPS token goes in an Authorization
// header (through the environment, never the command line); an SSH
// private key — a read-only deploy key — is written, 0600, to a private
// directory under dir for ssh to read, with the host key pinned by
// knownHosts (CCCI_SECRETS_KNOWN_HOSTS). done removes the key file.
func credentialEnv(dir, cred, knownHosts string, r *redact.Redactor) (env []string, done func(), err error) {
	var locked *ssh.PassphraseMissingError
	if _, err := ssh.ParseRawPrivateKey([]byte(cred)); err != nil && !errors.As(err, &locked) { // not a private key: a token
		auth := base64.StdEncoding.EncodeToString([]byte("ci:" + cred))
		r.Add("secrets-repo-auth", []byte(auth))
		return []string{"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader", "GIT_CONFIG_VALUE_0=Authorization: Basic " + auth}, func() {}, nil
	}
	if knownHosts == "" {
		return nil, nil, errors.New("the credential is an SSH deploy key: set CCCI_SECRETS_KNOWN_HOSTS to the known_hosts file that pins the secrets repo's host key")
	}
	if _, err := os.Stat(knownHosts); err != nil {
		return nil, nil, fmt.Errorf("CCCI_SECRETS_KNOWN_HOSTS: %w", err)
	}
	keyFile, done, err := keyFileIn(dir, []byte(strings.TrimSpace(cred)+"\n"))
	if err != nil {
		return nil, nil, err
	}
	return []string{"GIT_SSH_COMMAND=" + sshCommand(keyFile, knownHosts)}, done, nil
}

// keyFileIn writes a private key for ssh to read: 0600, in a 0700
// directory of its own under parent ("": the temp dir). done removes both.
func keyFileIn(parent string, key []byte) (file string, done func(), err error) {
	keyDir, err := os.MkdirTemp(parent, "ssh-key-")
	if err != nil {
		return "", nil, err
	}
	done = func() { _ = os.RemoveAll(keyDir) }
	file = filepath.Join(keyDir, "id")
	if err := os.WriteFile(file, key, 0o600); err != nil {
		done()
		return "", nil, err
	}
	return file, done, nil
}

// sshCommand is the ssh git runs for the secrets repo: no configuration
// but these options, the one identity given ("none": no identity at all),
// never a prompt, the server's host key checked against knownHosts only.
func sshCommand(identity, knownHosts string) string {
	return "ssh -F /dev/null -o IdentitiesOnly=yes -o IdentityFile=" + remote.ShellQuote(identity) +
		" -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=" + remote.ShellQuote(knownHosts)
}

// clone makes a mirror: bare (no work tree, no checkout, nothing to
// follow), with every ref the server offers — not only branches and tags: a
// secret that lives only in refs/pull/…, refs/notes/… or any other
// namespace is served to anyone who asks, so it is scanned too.
func clone(ctx context.Context, env []string, url, dir string) error {
	if _, stderr, err := gitexec.Run(ctx, env, nil, "clone", "--mirror", "-q", "--", url, dir); err != nil {
		return fmt.Errorf("git clone: %w: %s", err, stderr)
	}
	return nil
}

// readBase and readSecrets read a file as committed at the installed commit.
func (rp *Repos) readBase(ctx context.Context, path string) ([]byte, error) {
	return readCommitted(ctx, rp.Base, rp.BaseCommit, path)
}

func (rp *Repos) readSecrets(ctx context.Context, path string) ([]byte, error) {
	return readCommitted(ctx, rp.Secrets, rp.SecretsCommit, path)
}

// Secrets decrypts the secrets repo's file in memory and registers every
// value with the redactor before returning it.
func Secrets(rp *Repos, key *AgeKey, r *redact.Redactor) (map[string]string, error) {
	enc, err := rp.readSecrets(context.Background(), SecretsDoc)
	if err != nil {
		return nil, fmt.Errorf("secrets repo: %w", err)
	}
	info, err := sopsfile.Inspect(enc)
	if err != nil {
		return nil, fmt.Errorf("secrets repo %s: %w", SecretsDoc, err)
	}
	if plain := info.Plaintext(); len(plain) > 0 {
		return nil, fmt.Errorf("secrets repo %s: values not encrypted: %s", SecretsDoc, strings.Join(plain, ", "))
	}
	vals, err := sopsfile.Decrypt(enc, key.Identity)
	if err != nil {
		return nil, fmt.Errorf("secrets repo %s: %w", SecretsDoc, err)
	}
	if err := otherSopsFiles(rp, key, vals); err != nil {
		return nil, err
	}
	baseSopsFiles(rp, key, vals)
	for name, v := range vals {
		r.Add(name, []byte(v))
	}
	return vals, nil
}

// SecretName is the name Secrets gives the value of key in a sops file:
// the key itself in SecretsDoc, "<file>:<key>" in any other. A key is as
// sops-nix writes it (nested with "/") or as the file flattens (".").
func SecretName(file, key string) string {
	key = strings.ReplaceAll(key, "/", ".")
	if file == SecretsDoc || file == "" {
		return key
	}
	return file + ":" + key
}

// DeclaredValue is what sops-nix installs for a secret declared with
// sopsFile file (relative to the repo that holds it: the secrets repo, or
// the base for a credential the base keeps), format and key, as
// sops-install-secrets' decryptSecret reads it (Mic92/sops-nix 56b2406):
// the whole plaintext file for binary, dotenv and ini, and for yaml or json
// with key ""; otherwise the string at the key, nested with "/". known are
// Secrets' values (the secrets repo's, by SecretName). Whatever it decrypts
// is registered with r before it is returned.
func DeclaredValue(rp *Repos, k *AgeKey, known map[string]string, file, format, key string, r *redact.Redactor) (string, error) {
	whole := format == "binary" || format == "dotenv" || format == "ini" || key == ""
	if v, ok := known[SecretName(file, key)]; ok && !whole {
		return v, nil
	}
	ctx := context.Background()
	enc, err := rp.readSecrets(ctx, file)
	where := "secrets repo " + file
	if err != nil {
		if enc, err = rp.readBase(ctx, file); err != nil {
			return "", fmt.Errorf("sopsFile %s is in neither repo at its pinned commit", file)
		}
		where = "base repo " + file
	}
	if whole {
		plain, err := sopsfile.Plain(enc, format, k.Identity)
		if err != nil {
			return "", fmt.Errorf("%s (format %s): %w", where, format, err)
		}
		r.Add(where, plain)
		return string(plain), nil
	}
	if format != "yaml" && format != "json" {
		return "", fmt.Errorf("%s: format %q is none of sops-nix's", where, format)
	}
	vals, err := sopsfile.DecryptFile(file, enc, k.Identity)
	if err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	for name, v := range vals {
		r.Add(where+":"+name, []byte(v))
	}
	v, ok := vals[strings.ReplaceAll(key, "/", ".")]
	if !ok {
		return "", fmt.Errorf("%s holds no key %q", where, key)
	}
	return v, nil
}

// otherSopsFiles adds to vals the values of every other sops file the
// secrets repo holds at its installed commit (a host's sops.secrets may
// name any of them as sopsFile), named by SecretName. A file that is not a
// sops file is C1's to judge, not a source of secrets.
func otherSopsFiles(rp *Repos, key *AgeKey, vals map[string]string) error {
	ctx := context.Background()
	ls, err := gitOut(ctx, rp.Secrets, "ls-tree", "-r", "-z", "--name-only", "--full-tree", rp.SecretsCommit)
	if err != nil {
		return fmt.Errorf("secrets repo: %w", err)
	}
	for _, file := range strings.Split(ls, "\x00") {
		if file == "" || file == SecretsDoc || file == ".sops.yaml" {
			continue
		}
		enc, err := rp.readSecrets(ctx, file)
		if err != nil {
			continue // a symlink, a submodule: C1 names it
		}
		if _, err := sopsfile.InspectFile(file, enc); err != nil {
			continue
		}
		more, err := sopsfile.DecryptFile(file, enc, key.Identity)
		if err != nil {
			return fmt.Errorf("secrets repo %s: %w", file, err)
		}
		for k, v := range more {
			vals[SecretName(file, k)] = v
		}
	}
	return nil
}

// BasePrefix marks a secret of a sops file the base keeps (a credential the
// host declares from its own repo): "base:" + SecretName(file, key).
const BasePrefix = "base:"

// baseSopsFiles adds the values of every sops file committed in the base
// that the bootstrap key decrypts — a secret a declaration's sopsFile may
// name there, searched for and redacted as the secrets repo's are. One the
// key cannot decrypt is no secret of this machine's; one not sops is none.
func baseSopsFiles(rp *Repos, key *AgeKey, vals map[string]string) {
	ctx := context.Background()
	ls, err := gitOut(ctx, rp.Base, "ls-tree", "-r", "-z", "--name-only", "--full-tree", rp.BaseCommit)
	if err != nil {
		return
	}
	for _, file := range strings.Split(ls, "\x00") {
		enc, err := rp.readBase(ctx, file)
		if err != nil || !bytes.Contains(enc, []byte("sops")) { // every sops format names its metadata so
			continue
		}
		if _, err := sopsfile.InspectFile(file, enc); err != nil {
			continue
		}
		more, err := sopsfile.DecryptFile(file, enc, key.Identity)
		if err != nil {
			continue
		}
		for k, v := range more {
			vals[BasePrefix+SecretName(file, k)] = v
		}
	}
}

// PushFunc writes one file on the machine (the machine's own PushFile checks
// that the machine is the harness's before it writes).
type PushFunc func(ctx context.Context, f incus.FileSpec) error

// ProvisionAgeKey is the operator's one out-of-band action: copy the
// bootstrap key to the machine, readable by root only.
func ProvisionAgeKey(push PushFunc, path string, key *AgeKey) installdoc.OperatorAction {
	return func(ctx context.Context) ([]installdoc.Pushed, error) {
		if err := push(ctx, incus.FileSpec{Path: path, Mode: 0o400, Data: key.File}); err != nil {
			return nil, err
		}
		return []installdoc.Pushed{{Step: installdoc.AgeKeyStep, Path: path, Mode: "0400", Fingerprint: SHA256(key.File)}}, nil
	}
}

// MachineStandIn fills ${MACHINE} where the machine's address is not known
// yet (reading the document before a machine exists).
const MachineStandIn = "MACHINE-ADDRESS"

// Placeholders are the values install.md may use, by name.
func Placeholders(baseURL, secretsURL, domain, gateway, machine string) map[string]string {
	return map[string]string{"BASE_REPO_URL": baseURL, "SECRETS_REPO_URL": secretsURL,
		"DOMAIN": domain, "GATEWAY": gateway, "MACHINE": machine}
}

// Operators are the operator steps the harness can do in the operator's
// place: exactly one, the age key.
func Operators(push PushFunc, keyPath string, key *AgeKey) map[string]installdoc.OperatorAction {
	return map[string]installdoc.OperatorAction{installdoc.AgeKeyStep: ProvisionAgeKey(push, keyPath, key)}
}

// SHA256 is the hex digest of b.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ErrNoTarget says the configuration does not name a target.
var ErrNoTarget = errors.New("no target configured: set CCCI_BASE_REPO_URL, CCCI_SECRETS_REPO_URL and CCCI_AGE_KEY_FILE (make lab-up writes them)")

// AllSecrets is every secret a target has: the secrets repo's values, the
// secrets repo's read token and the bootstrap age key — what must never
// appear in plaintext anywhere.
func AllSecrets(rp *Repos, key *AgeKey, values map[string]string) map[string]string {
	all := map[string]string{"bootstrap-age-key": key.Identity, "secrets-repo-token": rp.AccessToken}
	for k, v := range values {
		all[k] = v
	}
	return all
}

// Private is every secret but public material (PublicMaterial): what no
// user but root may read on the machine.
func Private(all map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range all {
		if !PublicMaterial(v) {
			out[k] = v
		}
	}
	return out
}

// PublicMaterial reports whether a secret's value is certificates and
// nothing else (a chain the server hands every client): readable by
// anyone without harm. A key, or anything besides PEM certificates, is not.
func PublicMaterial(value string) bool {
	rest := []byte(strings.TrimSpace(value))
	n := 0
	for len(rest) > 0 {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil || blk.Type != "CERTIFICATE" || len(blk.Headers) > 0 {
			return false
		}
		rest = bytes.TrimSpace(rest)
		n++
	}
	return n > 0
}
