package sopsfile

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/labtest"
)

func identity(t *testing.T) *age.X25519Identity {
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	return id
}

const plain = "webhook_hmac: s3cret-hmac\ndrone:\n  rpc_secret: rpc-0123456789\nnested:\n  list:\n    - first\n"

func TestRoundTripToEveryRecipient(t *testing.T) {
	boot, recovery := identity(t), identity(t)
	enc, err := Encrypt([]byte(plain), []string{boot.Recipient().String(), recovery.Recipient().String()})
	require.NoError(t, err)
	assert.NotContains(t, string(enc), "s3cret-hmac")
	for _, id := range []*age.X25519Identity{boot, recovery} {
		got, err := Decrypt(enc, id.String())
		require.NoError(t, err)
		assert.Equal(t, "s3cret-hmac", got["webhook_hmac"])
		assert.Equal(t, "rpc-0123456789", got["drone.rpc_secret"])
		assert.Equal(t, "first", got["nested.list.0"])
	}
}

func TestWrongKeyCannotDecrypt(t *testing.T) {
	enc, err := Encrypt([]byte(plain), []string{identity(t).Recipient().String()})
	require.NoError(t, err)
	_, err = Decrypt(enc, identity(t).String())
	require.ErrorIs(t, err, ErrNoMatchingKey)
}

func TestTamperedValueFailsTheMAC(t *testing.T) {
	id := identity(t)
	enc, err := Encrypt([]byte("a: one-value\nb: two-value\n"), []string{id.Recipient().String()})
	require.NoError(t, err)
	// Swap the two ciphertexts: each still decrypts, but the MAC no longer matches.
	lines := strings.Split(string(enc), "\n")
	var ia, ib int
	for i, l := range lines {
		if strings.HasPrefix(l, "a: ") {
			ia = i
		}
		if strings.HasPrefix(l, "b: ") {
			ib = i
		}
	}
	lines[ia], lines[ib] = "a: "+strings.TrimPrefix(lines[ib], "b: "), "b: "+strings.TrimPrefix(lines[ia], "a: ")
	_, err = Decrypt([]byte(strings.Join(lines, "\n")), id.String())
	require.Error(t, err)
}

func TestInspectSeesRecipientsAndPlaintextLeaves(t *testing.T) {
	boot := identity(t)
	enc, err := Encrypt([]byte(plain), []string{boot.Recipient().String()})
	require.NoError(t, err)
	info, err := Inspect(enc)
	require.NoError(t, err)
	assert.Equal(t, []string{boot.Recipient().String()}, info.Recipients)
	assert.True(t, info.HasMAC)
	assert.Empty(t, info.Plaintext())
	assert.Len(t, info.Leaves, 3)

	leaky := append([]byte("leaked_token: plain-text-here\n"), enc...)
	info, err = Inspect(leaky)
	require.NoError(t, err)
	assert.Equal(t, []string{"leaked_token"}, info.Plaintext())

	_, err = Inspect([]byte("just: yaml\n"))
	require.ErrorContains(t, err, "not sops-encrypted")
}

// sops ignores a key under sops: that it did not write, and still decrypts
// the file: such a value is plaintext, not metadata.
func TestAValueUnderSopsThatSopsDidNotWriteIsPlaintext(t *testing.T) {
	boot := identity(t)
	enc, err := Encrypt([]byte(plain), []string{boot.Recipient().String()})
	require.NoError(t, err)
	hidden := bytes.Replace(enc, []byte("\nsops:\n"), []byte("\nsops:\n    registry_password_backup: hunter2-plain\n"), 1)
	require.False(t, bytes.Equal(enc, hidden), "the key was added under sops:")
	vals, err := Decrypt(hidden, boot.String())
	require.NoError(t, err, "sops itself decrypts it: the extra key rides along")
	assert.Equal(t, "s3cret-hmac", vals["webhook_hmac"])
	info, err := Inspect(hidden)
	require.NoError(t, err)
	assert.Equal(t, []string{"sops.registry_password_backup"}, info.Plaintext())

	inAKeyEntry := bytes.Replace(enc, []byte("\n          recipient: "), []byte("\n          note: hunter2-plain\n          recipient: "), 1)
	require.False(t, bytes.Equal(enc, inAKeyEntry), "the key was added to the age entry")
	info, err = Inspect(inAKeyEntry)
	require.NoError(t, err)
	assert.Equal(t, []string{"sops.age.0.note"}, info.Plaintext(), "nested: a key entry takes only sops's own fields")
}

// A value under a field sops writes, not of the shape sops writes there, is
// plaintext too: the audit's pgp fingerprint and KMS context (sops still
// decrypts the file with its age key), an age stanza that is no armour, a
// version that is no version.
func TestAValueNotOfItsFieldsShapeIsPlaintext(t *testing.T) {
	boot := identity(t)
	enc, err := Encrypt([]byte(plain), []string{boot.Recipient().String()})
	require.NoError(t, err)
	for want, edit := range map[string][2]string{
		"sops.pgp.0.fp":      {"\nsops:\n", "\nsops:\n    pgp:\n        - fp: hunter2-plain-text\n          created_at: \"2026-12-07T00:00:00Z\"\n"},
		"sops.kms.0.context": {"\nsops:\n", "\nsops:\n    kms:\n        - context:\n            name: hunter2-plain-text\n"},
		"sops.version":       {"\n    version: ", "\n    version: hunter2-plain-text\n    old_version: "},
		"sops.lastmodified":  {"\n    lastmodified: ", "\n    lastmodified: hunter2-plain-text\n    old_lastmodified: "},
	} {
		t.Run(want, func(t *testing.T) {
			edited := bytes.Replace(enc, []byte(edit[0]), []byte(edit[1]), 1)
			require.False(t, bytes.Equal(enc, edited), "the edit applies")
			info, err := Inspect(edited)
			require.NoError(t, err)
			assert.Contains(t, info.Plaintext(), want)
		})
	}
	t.Run("sops still decrypts it", func(t *testing.T) {
		edited := bytes.Replace(enc, []byte("\nsops:\n"), []byte("\nsops:\n    pgp:\n        - fp: hunter2-plain-text\n          created_at: \"2026-12-07T00:00:00Z\"\n"), 1)
		vals, err := Decrypt(edited, boot.String())
		require.NoError(t, err, "the plaintext rides along")
		assert.Equal(t, "s3cret-hmac", vals["webhook_hmac"])
	})
}

// The files the harness writes must be readable by the real sops CLI, and the
// CLI's files by the harness. The lab builds the CLI (from the same module
// version) into its cache for the blank image.
func TestInteroperatesWithTheSopsCLI(t *testing.T) {
	bin, id, dir, env := sopsCLI(t)

	// ours → CLI
	enc, err := Encrypt([]byte(plain), []string{id.Recipient().String()})
	require.NoError(t, err)
	f := filepath.Join(dir, "ours.yaml")
	require.NoError(t, os.WriteFile(f, enc, 0o600))
	cmd := exec.Command(bin, "-d", "--extract", `["drone"]["rpc_secret"]`, f)
	cmd.Env = env
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, "rpc-0123456789", strings.TrimSpace(string(out)))

	// CLI → ours
	p := filepath.Join(dir, "theirs.yaml")
	require.NoError(t, os.WriteFile(p, []byte(plain), 0o600))
	cmd = exec.Command(bin, "-e", "--age", id.Recipient().String(), p)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	theirs, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	got, err := Decrypt(theirs, id.String())
	require.NoError(t, err)
	assert.Equal(t, "s3cret-hmac", got["webhook_hmac"])
	// What the CLI writes under sops: is, field by field, what sops writes.
	info, err := Inspect(theirs)
	require.NoError(t, err)
	assert.Empty(t, info.Plaintext(), "the CLI's own file holds no plaintext:\n%s", theirs)
}

// Each format sops-nix reads a whole file in (binary, dotenv, ini; yaml or
// json with key = "") decrypts to the very bytes the sops CLI writes — the
// same library function sops-install-secrets calls (decrypt.File) — from a
// file the CLI encrypted. The YAML reader of the values (Decrypt) reads a
// JSON and a binary file too (JSON is YAML): a binary file's value is its
// "data", nested JSON keys are dotted.
func TestEveryFormatDecryptsAsSopsWritesIt(t *testing.T) {
	bin, id, dir, env := sopsCLI(t)
	sops := func(args ...string) []byte {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "sops %v: %s", args, stderr.String())
		return out
	}
	cert := "-----BEGIN CERTIFICATE-----\nMIIB…\n-----END CERTIFICATE-----\n"
	for format, plainText := range map[string]string{
		"yaml":   plain,
		"json":   `{"drone": {"rpc_secret": "rpc-0123456789"}, "webhook_hmac": "s3cret-hmac"}`,
		"binary": cert,
		"dotenv": "DRONE_RPC_SECRET=rpc-0123456789\nWEBHOOK_HMAC=s3cret-hmac\n",
		"ini":    "[drone]\nrpc_secret = rpc-0123456789\n",
	} {
		p := filepath.Join(dir, "plain."+format)
		require.NoError(t, os.WriteFile(p, []byte(plainText), 0o600))
		enc := sops("-e", "--input-type", format, "--output-type", format, "--age", id.Recipient().String(), p)
		e := filepath.Join(dir, "enc."+format)
		require.NoError(t, os.WriteFile(e, enc, 0o600))
		want := sops("-d", "--input-type", format, "--output-type", format, e)
		got, err := Plain(enc, format, id.String())
		require.NoError(t, err, format)
		assert.Equal(t, string(want), string(got), "%s: the whole file, as sops writes it", format)
		if format == "binary" {
			assert.Equal(t, cert, string(got), "a binary file is its bytes")
		}
		_, err = Plain(enc, format, identity(t).String())
		assert.ErrorIs(t, err, ErrNoMatchingKey, format)
		if format == "json" || format == "binary" {
			vals, err := Decrypt(enc, id.String())
			require.NoError(t, err, format)
			if format == "json" {
				assert.Equal(t, "rpc-0123456789", vals["drone.rpc_secret"])
			} else {
				assert.Equal(t, cert, vals["data"])
			}
		}
	}
	_, err := Plain([]byte("x"), "toml", id.String())
	assert.ErrorContains(t, err, `format "toml" is none of sops-nix's`)
}

// dotenv and ini sops files are read by their names, as sops reads them:
// their recipients, their MAC, every value encrypted, and their values.
func TestDotenvAndIniFilesAreReadByTheirNames(t *testing.T) {
	bin, id, dir, _ := sopsCLI(t)
	for name, body := range map[string]string{"drone.env": "DRONE_RPC_SECRET=rpc-0123456789\n", "app.ini": "[drone]\nrpc_secret = rpc-0123456789\n"} {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		cmd := exec.Command(bin, "-e", "--age", id.Recipient().String(), p)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		enc, err := cmd.Output()
		require.NoError(t, err, stderr.String())

		info, err := InspectFile(name, enc)
		require.NoError(t, err, name)
		assert.Equal(t, []string{id.Recipient().String()}, info.Recipients, name)
		assert.True(t, info.HasMAC, name)
		assert.Empty(t, info.Plaintext(), name)
		vals, err := DecryptFile(name, enc, id.String())
		require.NoError(t, err, name)
		assert.Contains(t, []string{vals["DRONE_RPC_SECRET"], vals["drone.rpc_secret"]}, "rpc-0123456789", name)

		_, err = Inspect(enc)
		assert.Error(t, err, "%s is not YAML: read by its name, not by Inspect", name)
		if name == "drone.env" {
			plainToo := append(enc, []byte("REGISTRY_TOKEN=tok-0123456789\n")...)
			info, err := InspectFile(name, plainToo)
			require.NoError(t, err)
			assert.Equal(t, []string{"REGISTRY_TOKEN"}, info.Plaintext(), "a value added in plaintext")
		}
	}
	_, err := InspectFile("notes.env", []byte("A=b\n"))
	assert.Error(t, err, "a dotenv file with no sops metadata is not a sops file")
}

// sopsCLI is the lab's sops binary, a fresh age identity, a directory, and
// the environment in which the CLI decrypts with that identity.
func sopsCLI(t *testing.T) (bin string, id *age.X25519Identity, dir string, env []string) {
	t.Helper()
	bin = "/var/cache/cc-ci-lab/bin/sops"
	if _, err := os.Stat(bin); err != nil {
		labtest.Unavailable(t, "sops CLI not built at "+bin+" (make lab-up builds it)")
	}
	id, dir = identity(t), t.TempDir()
	keyFile := filepath.Join(dir, "key.txt")
	require.NoError(t, os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600))
	return bin, id, dir, append(os.Environ(), "SOPS_AGE_KEY_FILE="+keyFile)
}
