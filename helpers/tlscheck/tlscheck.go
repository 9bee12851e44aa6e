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
	"time"
)

// Served is what a server presented.
type Served struct {
	Leaf      *x509.Certificate
	Chain     []*x509.Certificate
	VerifyErr error // nil when the chain verifies for the name against the roots
}

// Fetch connects to addr with SNI name. The handshake accepts any chain so
// that a wrong certificate can be reported (not just refused); verification
// against roots is done afterwards and returned in VerifyErr.
func Fetch(ctx context.Context, addr, name string, roots *x509.CertPool) (*Served, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{
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
	s := &Served{Leaf: st.PeerCertificates[0], Chain: st.PeerCertificates}
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
