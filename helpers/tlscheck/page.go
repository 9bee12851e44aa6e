package tlscheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"

	"github.com/cc-ci/acceptance/helpers/bounds"
)

// Page is what a served name answered to GET / over HTTPS.
type Page struct {
	URL    string // the last one asked, after redirects
	Status int
	Text   string // the status line's text ("500 Internal Server Error")
}

// OK says whether the name answered with a success status (2xx).
func (p *Page) OK() bool { return p.Status >= 200 && p.Status < 300 }

// maxRedirects is how many redirects are followed among the served names
// (a dashboard's / sending the browser to /login, say).
const maxRedirects = 5

// GetPage asks addr for https://name/ with SNI and Host name, verifying the
// chain against roots, and follows redirects only to the served names
// (names), over HTTPS, at the same address: a redirect elsewhere is the
// answer, not followed. At most 1 MiB of each body is read.
func GetPage(ctx context.Context, addr, name string, names []string, roots *x509.CertPool) (*Page, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: bounds.Dial}).DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		Proxy:             nil,
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: bounds.Page, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects || req.URL.Scheme != "https" || !slices.Contains(names, req.URL.Hostname()) ||
			(req.URL.Port() != "" && req.URL.Port() != "443") {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+name+"/", nil)
	if err != nil {
		return nil, err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET https://%s/ at %s: %w", name, addr, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return &Page{URL: resp.Request.URL.String(), Status: resp.StatusCode, Text: resp.Status}, nil
}
