// Package sshsig signs and verifies messages in OpenSSH's signature format
// (PROTOCOL.sshsig: what `ssh-keygen -Y sign` writes and `ssh-keygen -Y
// verify` checks), with keys from golang.org/x/crypto/ssh. The harness signs
// each evidence entry with the runner's key so a reviewer can verify the
// chain with ssh-keygen and an allowed_signers file, or with `ccci verify`.
package sshsig

import (
	"bufio"
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

const (
	magic     = "SSHSIG"
	version   = 1
	hashAlg   = "sha512"
	pemType   = "SSH SIGNATURE"
	maxArmour = 16 << 10
)

// blob is the signature as PROTOCOL.sshsig §2 lays it out (after the magic).
type blob struct {
	Version   uint32
	PublicKey []byte
	Namespace string
	Reserved  string
	HashAlg   string
	Signature []byte
}

// signedData is what is actually signed (PROTOCOL.sshsig §3, after the magic).
type signedData struct {
	Namespace string
	Reserved  string
	HashAlg   string
	Hash      []byte
}

func toSign(namespace string, message []byte) []byte {
	h := sha512.Sum512(message)
	return append([]byte(magic), ssh.Marshal(signedData{namespace, "", hashAlg, h[:]})...)
}

// Sign returns the armoured signature of message in namespace.
func Sign(signer ssh.Signer, namespace string, message []byte) ([]byte, error) {
	if namespace == "" {
		return nil, errors.New("sshsig: a namespace is required")
	}
	sig, err := signer.Sign(nil, toSign(namespace, message))
	if err != nil {
		return nil, fmt.Errorf("sshsig: sign: %w", err)
	}
	b := append([]byte(magic), ssh.Marshal(blob{version, signer.PublicKey().Marshal(), namespace, "", hashAlg, ssh.Marshal(sig)})...)
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: b}), nil
}

// Verify checks an armoured signature of message in namespace and returns
// the key that made it. It does not say whether that key is trusted: see
// AllowedSigners.
func Verify(armoured []byte, namespace string, message []byte) (ssh.PublicKey, error) {
	if len(armoured) > maxArmour {
		return nil, errors.New("sshsig: signature too large")
	}
	block, _ := pem.Decode(armoured)
	if block == nil || block.Type != pemType {
		return nil, errors.New("sshsig: not an armoured SSH signature")
	}
	rest, ok := bytes.CutPrefix(block.Bytes, []byte(magic))
	if !ok {
		return nil, errors.New("sshsig: bad magic")
	}
	var b blob
	if err := ssh.Unmarshal(rest, &b); err != nil {
		return nil, fmt.Errorf("sshsig: %w", err)
	}
	switch {
	case b.Version != version:
		return nil, fmt.Errorf("sshsig: version %d", b.Version)
	case b.Namespace != namespace:
		return nil, fmt.Errorf("sshsig: signed for namespace %q, not %q", b.Namespace, namespace)
	case b.HashAlg != hashAlg:
		return nil, fmt.Errorf("sshsig: hash %q (only %s is made here)", b.HashAlg, hashAlg)
	}
	pub, err := ssh.ParsePublicKey(b.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("sshsig: public key: %w", err)
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(b.Signature, &sig); err != nil {
		return nil, fmt.Errorf("sshsig: signature: %w", err)
	}
	if err := pub.Verify(toSign(namespace, message), &sig); err != nil {
		return nil, fmt.Errorf("sshsig: the signature does not match the message: %w", err)
	}
	return pub, nil
}

// Signer is a principal allowed to sign in a namespace (an allowed_signers line).
type Signer struct {
	Principal  string
	Namespaces []string // empty: any
	Key        ssh.PublicKey
}

// AllowedSigners parses ssh-keygen's allowed_signers format (ssh-keygen(1),
// ALLOWED SIGNERS): "principals [options] keytype base64-key [comment]", with
// the namespaces="…" option honoured; other options are refused rather than
// ignored.
func AllowedSigners(text []byte) ([]Signer, error) {
	var out []Signer
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		principals, rest, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("allowed_signers line %d: no key", n)
		}
		key, _, options, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(rest)))
		if err != nil {
			return nil, fmt.Errorf("allowed_signers line %d: %w", n, err)
		}
		var namespaces []string
		for _, o := range options {
			v, ok := strings.CutPrefix(o, "namespaces=")
			if !ok {
				return nil, fmt.Errorf("allowed_signers line %d: option %q is not supported", n, o)
			}
			namespaces = strings.Split(strings.Trim(v, `"`), ",")
		}
		for _, p := range strings.Split(principals, ",") {
			out = append(out, Signer{Principal: p, Namespaces: namespaces, Key: key})
		}
	}
	return out, sc.Err()
}

// Allowed returns the principal key may sign for in namespace, or false.
func Allowed(signers []Signer, key ssh.PublicKey, namespace string) (string, bool) {
	for _, s := range signers {
		if !bytes.Equal(s.Key.Marshal(), key.Marshal()) {
			continue
		}
		if len(s.Namespaces) == 0 || slices.Contains(s.Namespaces, namespace) {
			return s.Principal, true
		}
	}
	return "", false
}

// Fingerprint is the key's SHA256 fingerprint as ssh-keygen prints it.
func Fingerprint(key ssh.PublicKey) string { return ssh.FingerprintSHA256(key) }

// The base64 body of a signature, one line (for a JSON field).
func Compact(armoured []byte) string {
	block, _ := pem.Decode(armoured)
	if block == nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(block.Bytes)
}

// Armour turns a Compact signature back into the armoured form ssh-keygen reads.
func Armour(compact string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(compact)
	if err != nil {
		return nil, fmt.Errorf("sshsig: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: b}), nil
}
