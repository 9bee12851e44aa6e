// Package tlscheck asks a TLS server for its certificate with a given SNI
// name and verifies it against given roots — per connection, never by
// turning verification off globally.
package tlscheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
)

// Served is what a server presented.
type Served struct {
	Leaf      *x509.Certificate
	VerifyErr error // nil when the chain verifies for the name against the roots
}

// Fetch connects to addr with SNI name. The handshake accepts any chain so
// that a wrong certificate can be reported (not just refused); verification
// against roots is done afterwards and returned in VerifyErr.
func Fetch(ctx context.Context, addr, name string, roots *x509.CertPool) (*Served, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: bounds.Dial}, Config: &tls.Config{
		ServerName: name,
		// Verification happens below, on this connection only, with the given roots.
		InsecureSkipVerify: true, //nolint:gosec
	}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("TLS to %s (SNI %s): %w", addr, name, err)
	}
	defer conn.Close()
	st := conn.(*tls.Conn).ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return nil, fmt.Errorf("TLS to %s (SNI %s): no certificate presented", addr, name)
	}
	s := &Served{Leaf: st.PeerCertificates[0]}
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, s.VerifyErr = s.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
	return s, nil
}

// Roots loads a PEM bundle, or the system roots when path is "".
func Roots(path string) (*x509.CertPool, error) {
	if path == "" {
		return x509.SystemCertPool()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CCCI_TLS_CA: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CCCI_TLS_CA=%s: no PEM certificate in it", path)
	}
	return p, nil
}

// FirstCert parses the first certificate of a PEM bundle.
func FirstCert(pemBytes []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(pemBytes)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// CertProblems judges a certificate+key pair from git for a domain: the key
// matches, the leaf covers *.domain, and it stays valid minDays from now.
// Each problem is one error naming it; none means the pair is usable.
func CertProblems(chainPEM, keyPEM []byte, domain string, minDays int, now time.Time) []error {
	var out []error
	leaf, err := FirstCert(chainPEM)
	if err != nil {
		return []error{fmt.Errorf("the certificate chain: %w", err)}
	}
	if _, err := tls.X509KeyPair(chainPEM, keyPEM); err != nil {
		out = append(out, fmt.Errorf("the key does not match the certificate: %w", err))
	}
	if err := leaf.VerifyHostname("x." + domain); err != nil {
		out = append(out, fmt.Errorf("the certificate's names %v do not cover *.%s", leaf.DNSNames, domain))
	}
	if now.After(leaf.NotAfter) {
		out = append(out, fmt.Errorf("the certificate expired on %s", leaf.NotAfter.Format(time.RFC3339)))
	} else if left := leaf.NotAfter.Sub(now); left < time.Duration(minDays)*24*time.Hour {
		out = append(out, fmt.Errorf("the certificate expires on %s: %.0f days left, fewer than %d",
			leaf.NotAfter.Format(time.RFC3339), left.Hours()/24, minDays))
	}
	if now.Before(leaf.NotBefore) {
		out = append(out, fmt.Errorf("the certificate is not valid before %s", leaf.NotBefore.Format(time.RFC3339)))
	}
	return out
}

// Pair finds the certificate and its key among a target's secrets by what
// they are, not by their names: a secret that is a PEM certificate chain
// and the secret that is its private key — one whose leaf covers *.domain
// first, if there is one (CertProblems judges the pair). ok is false when
// no secret is a certificate with its key.
func Pair(secrets map[string]string, domain string) (chainName, keyName string, ok bool) {
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	sort.Strings(names) // the same answer every run
	for _, covering := range []bool{true, false} {
		for _, c := range names {
			leaf, err := FirstCert([]byte(secrets[c]))
			if err != nil || (leaf.VerifyHostname("x."+domain) == nil) != covering {
				continue
			}
			for _, k := range names {
				if k != c && strings.Contains(secrets[k], "PRIVATE KEY") {
					if _, err := tls.X509KeyPair([]byte(secrets[c]), []byte(secrets[k])); err == nil {
						return c, k, true
					}
				}
			}
		}
	}
	return "", "", false
}
