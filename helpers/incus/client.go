// Package incus is a small client for the documented Incus REST API
// (https://linuxcontainers.org/incus/docs/main/rest-api/), over the local
// unix socket or over HTTPS with a client certificate and a pinned server
// certificate. It speaks only the calls the harness needs.
package incus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
)

// Config says how to reach one Incus server. Exactly one of Socket or URL is used.
type Config struct {
	Socket     string // path of the unix socket, e.g. /var/lib/incus/unix.socket
	URL        string // https://host:8443
	ClientCert string // PEM file of the trusted client certificate (HTTPS)
	ClientKey  string // PEM file of its key (HTTPS)
	ServerCert string // PEM file of the server certificate, pinned as the only root (HTTPS)
	Target     string // cluster member for placement (target=), empty on a standalone host
	Timeout    time.Duration
}

// Client is safe for concurrent use.
type Client struct {
	http     *http.Client
	base     string
	target   string
	Endpoint string // what the client talks to, for messages
}

// New builds a client; it does not contact the server.
func New(cfg Config) (*Client, error) {
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = bounds.API
	}
	switch {
	case cfg.URL != "":
		tlsCfg, err := clientTLS(cfg)
		if err != nil {
			return nil, err
		}
		u, err := url.Parse(cfg.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("incus: URL %q: want https://host:port", cfg.URL)
		}
		return &Client{
			http:     &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tlsCfg}},
			base:     strings.TrimRight(cfg.URL, "/"),
			target:   cfg.Target,
			Endpoint: cfg.URL,
		}, nil
	case cfg.Socket != "":
		sock := cfg.Socket
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
		return &Client{
			http:     &http.Client{Timeout: timeout, Transport: tr},
			base:     "http://incus",
			target:   cfg.Target,
			Endpoint: "unix:" + sock,
		}, nil
	}
	return nil, fmt.Errorf("incus: neither a URL nor a socket is configured")
}

func clientTLS(cfg Config) (*tls.Config, error) {
	if cfg.ClientCert == "" || cfg.ClientKey == "" || cfg.ServerCert == "" {
		return nil, fmt.Errorf("incus: HTTPS needs client cert, client key and server cert files (got cert=%q key=%q server=%q)",
			cfg.ClientCert, cfg.ClientKey, cfg.ServerCert)
	}
	pair, err := tls.LoadX509KeyPair(cfg.ClientCert, cfg.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("incus: client certificate %s / key %s: %w", cfg.ClientCert, cfg.ClientKey, err)
	}
	raw, err := os.ReadFile(cfg.ServerCert)
	if err != nil {
		return nil, fmt.Errorf("incus: server certificate: %w", err)
	}
	pinned, err := parsePinned(raw)
	if err != nil {
		return nil, fmt.Errorf("incus: server certificate %s: %w", cfg.ServerCert, err)
	}
	// The pinned certificate is the server's identity, whatever host name the
	// URL uses: incusd's generated certificate names only the host's hostname,
	// 127.0.0.1 and ::1 (shared/tls/cert.go), and the incus CLI trusts the
	// pinned certificate as the only root and sets ServerName from it
	// (shared/tls/tls.go, TLSConfigWithTrustedCert). Go's name check is
	// therefore replaced by verifyPinned, which never skips the pin.
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // verification is VerifyConnection's: the pin, not the name
		VerifyConnection:   func(cs tls.ConnectionState) error { return verifyPinned(cs.PeerCertificates, pinned) },
	}, nil
}

// parsePinned reads the first certificate of a PEM file.
func parsePinned(raw []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		if b, raw = pem.Decode(raw); b == nil {
			return nil, errors.New("no PEM certificate in it")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// verifyPinned accepts the server if it presents the pinned certificate
// itself, or a chain the pinned certificate signed (a cluster's CA, which the
// incus CLI accepts the same way: the pin made a root). The host name is not
// checked: the pin is the identity.
func verifyPinned(peer []*x509.Certificate, pinned *x509.Certificate) error {
	if len(peer) == 0 {
		return errors.New("the server presented no certificate")
	}
	if bytes.Equal(peer[0].Raw, pinned.Raw) {
		return nil
	}
	root := *pinned
	root.IsCA, root.BasicConstraintsValid, root.KeyUsage = true, true, x509.KeyUsageCertSign
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(&root)
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	if _, err := peer[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("the server's certificate (sha256 %x) is not the pinned one (sha256 %x) nor signed by it: %w",
			sha256.Sum256(peer[0].Raw), sha256.Sum256(pinned.Raw), err)
	}
	return nil
}

// envelope is Incus's response wrapper for every call.
type envelope struct {
	Type       string          `json:"type"`
	Status     string          `json:"status"`
	StatusCode int             `json:"status_code"`
	Operation  string          `json:"operation"`
	ErrorCode  int             `json:"error_code"`
	Error      string          `json:"error"`
	Metadata   json.RawMessage `json:"metadata"`
}

// do sends one request and decodes the envelope. A non-2xx answer becomes an *Error.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any, out any) (*envelope, error) {
	var rdr io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("incus: encode %s %s: %w", method, path, err)
		}
		rdr = bytes.NewReader(b)
	}
	req, err := c.request(ctx, method, path, query, rdr)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, out)
}

func (c *Client) request(ctx context.Context, method, path string, query url.Values, body io.Reader) (*http.Request, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("incus: %s %s: %w", method, path, err)
	}
	return req, nil
}

func (c *Client) send(req *http.Request, out any) (*envelope, error) {
	what := req.Method + " " + req.URL.Path
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &Error{Op: what, Endpoint: c.Endpoint, Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, &Error{Op: what, Endpoint: c.Endpoint, Err: err}
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, &Error{Op: what, Endpoint: c.Endpoint, StatusCode: resp.StatusCode,
			Err: fmt.Errorf("answer is not an Incus response (HTTP %d): %.120q", resp.StatusCode, raw)}
	}
	if resp.StatusCode >= 300 || env.Type == "error" {
		code := env.ErrorCode
		if code == 0 {
			code = resp.StatusCode
		}
		return nil, &Error{Op: what, Endpoint: c.Endpoint, StatusCode: code, Message: env.Error}
	}
	if out != nil && len(env.Metadata) > 0 {
		if err := json.Unmarshal(env.Metadata, out); err != nil {
			return nil, &Error{Op: what, Endpoint: c.Endpoint, Err: fmt.Errorf("decode metadata: %w", err)}
		}
	}
	return &env, nil
}

// projectQuery is the query every project-scoped call carries.
func projectQuery(project string) url.Values {
	q := url.Values{}
	if project != "" {
		q.Set("project", project)
	}
	return q
}

// Server is what GET /1.0 says about the server and about us.
type Server struct {
	Auth          string            `json:"auth"` // "trusted" or "untrusted"
	APIExtensions []string          `json:"api_extensions"`
	APIVersion    string            `json:"api_version"`
	APIStatus     string            `json:"api_status"`
	Config        map[string]any    `json:"config"`
	Environment   ServerEnvironment `json:"environment"`
	// API extension auth_user: who the server takes the client to be.
	AuthUserName   string `json:"auth_user_name"`   // for tls, the certificate's fingerprint
	AuthUserMethod string `json:"auth_user_method"` // unix, tls, oidc, …
}

// ServerEnvironment is the part of Server that describes the host.
type ServerEnvironment struct {
	ServerName      string `json:"server_name"`
	ServerVersion   string `json:"server_version"`
	ServerClustered bool   `json:"server_clustered"`
	Driver          string `json:"driver"`
	// The server's certificate fingerprint (SHA-256, hex), shown to a
	// trusted client (incusd cmd/incusd/api_1.0.go; shared/api/server.go
	// ServerEnvironment.CertificateFingerprint): which server this is,
	// whatever address reached it.
	CertificateFingerprint string `json:"certificate_fingerprint"`
}

// Server returns GET /1.0. An untrusted client is reported as ErrForbidden,
// so a caller fails before it tries to create anything.
func (c *Client) Server(ctx context.Context) (*Server, error) {
	var s Server
	if _, err := c.do(ctx, http.MethodGet, "/1.0", nil, nil, &s); err != nil {
		return nil, err
	}
	if s.Auth != "trusted" {
		return &s, &Error{Op: "GET /1.0", Endpoint: c.Endpoint, StatusCode: http.StatusForbidden,
			Message: fmt.Sprintf("client is %q, not trusted: add its certificate to the server's trust store", s.Auth)}
	}
	return &s, nil
}

// Project is one Incus project.
type Project struct {
	Name   string            `json:"name"`
	Config map[string]string `json:"config"`
}

// Project returns one project (ErrNotFound when it does not exist or is hidden from us).
func (c *Client) Project(ctx context.Context, name string) (*Project, error) {
	return get[Project](ctx, c, "/1.0/projects/"+url.PathEscape(name), nil)
}

// Projects lists the projects the credentials can see.
func (c *Client) Projects(ctx context.Context) ([]Project, error) {
	return list[Project](ctx, c, "/1.0/projects")
}

// get is GET path?query: one object.
func get[T any](ctx context.Context, c *Client, path string, query url.Values) (*T, error) {
	var out T
	if _, err := c.do(ctx, http.MethodGet, path, query, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// list is GET path?recursion=1: the full objects of a server-wide collection.
func list[T any](ctx context.Context, c *Client, path string) ([]T, error) {
	var out []T
	_, err := c.do(ctx, http.MethodGet, path, url.Values{"recursion": {"1"}}, nil, &out)
	return out, err
}

// ImageAlias is what an alias points at.
type ImageAlias struct {
	Name   string `json:"name"`
	Target string `json:"target"` // the image fingerprint
	Type   string `json:"type"`   // container or virtual-machine
}

// ImageAlias resolves an alias in a project.
func (c *Client) ImageAlias(ctx context.Context, project, alias string) (*ImageAlias, error) {
	return get[ImageAlias](ctx, c, "/1.0/images/aliases/"+url.PathEscape(alias), projectQuery(project))
}

// Image is what GET /1.0/images/{fingerprint} says of an image.
type Image struct {
	Fingerprint string            `json:"fingerprint"`
	Type        string            `json:"type"`       // container or virtual-machine
	Properties  map[string]string `json:"properties"` // os, release, requirements.secureboot, …
}

// Image returns an image of a project by fingerprint.
func (c *Client) Image(ctx context.Context, project, fingerprint string) (*Image, error) {
	return get[Image](ctx, c, "/1.0/images/"+url.PathEscape(fingerprint), projectQuery(project))
}

// Profile is one profile of a project.
type Profile struct {
	Name    string                       `json:"name"`
	Config  map[string]string            `json:"config"`
	Devices map[string]map[string]string `json:"devices"`
}

// Profile returns a profile of a project.
func (c *Client) Profile(ctx context.Context, project, name string) (*Profile, error) {
	return get[Profile](ctx, c, "/1.0/profiles/"+url.PathEscape(name), projectQuery(project))
}

// StoragePool is one storage pool (GET /1.0/storage-pools?recursion=1).
type StoragePool struct {
	Name   string `json:"name"`
	Driver string `json:"driver"`
}

// StoragePools lists the server's storage pools.
func (c *Client) StoragePools(ctx context.Context) ([]StoragePool, error) {
	return list[StoragePool](ctx, c, "/1.0/storage-pools")
}

// Network is one network (GET /1.0/networks?recursion=1); Managed is false
// for the host's own interfaces, which Incus lists too.
type Network struct {
	Name    string `json:"name"`
	Managed bool   `json:"managed"`
	Type    string `json:"type"` // bridge, macvlan, sriov, ovn, physical
}

// Network returns one network as a project sees it.
func (c *Client) Network(ctx context.Context, project, name string) (*Network, error) {
	return get[Network](ctx, c, "/1.0/networks/"+url.PathEscape(name), projectQuery(project))
}

// Networks lists the networks Incus sees.
func (c *Client) Networks(ctx context.Context) ([]Network, error) {
	return list[Network](ctx, c, "/1.0/networks")
}

// SetServerConfig sets one server config key (PATCH /1.0 merges it with the rest).
func (c *Client) SetServerConfig(ctx context.Context, key, value string) error {
	body := map[string]any{"config": map[string]string{key: value}}
	if _, err := c.do(ctx, http.MethodPatch, "/1.0", nil, body, nil); err != nil {
		return fmt.Errorf("set server config %s: %w", key, err)
	}
	return nil
}

// Certificate is one entry of the server's trust store.
type Certificate struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"` // sha256 of the DER, hex
}

// Certificates lists the server's trust store.
func (c *Client) Certificates(ctx context.Context) ([]Certificate, error) {
	return list[Certificate](ctx, c, "/1.0/certificates")
}

// Identity is what the server lets the client see.
type Identity struct {
	Restricted  bool   // a restricted certificate: it sees only its projects
	Unknowable  bool   // another authentication method: what it sees is not knowable, treat as restricted
	Description string // for messages
}

// Identity reads who the server takes us for (Server: auth_user_*) and, for
// a TLS client, its own trust-store entry, which even a restricted
// certificate may read (internal/server/auth/driver_tls.go: certificates are
// can_view for everyone). It matters because incusd filters what a
// restricted certificate lists instead of refusing: GET
// /1.0/instances?all-projects=true leaves out the projects it may not see
// (cmd/incusd/instances_get.go, GetPermissionChecker), with no 403.
func (c *Client) Identity(ctx context.Context) (*Identity, error) {
	s, err := c.Server(ctx)
	if err != nil {
		return nil, err
	}
	switch s.AuthUserMethod {
	case "unix":
		return &Identity{Description: "the unix socket (unrestricted)"}, nil
	case "tls":
	default:
		return &Identity{Unknowable: true,
			Description: fmt.Sprintf("auth method %q: what it may see is not knowable from the API", s.AuthUserMethod)}, nil
	}
	cert, err := get[struct {
		Restricted bool     `json:"restricted"`
		Projects   []string `json:"projects"`
	}](ctx, c, "/1.0/certificates/"+url.PathEscape(s.AuthUserName), nil)
	if err != nil {
		return nil, fmt.Errorf("read the client certificate's own trust entry: %w", err)
	}
	fp := s.AuthUserName[:min(12, len(s.AuthUserName))]
	if !cert.Restricted {
		return &Identity{Description: "client certificate " + fp + " (unrestricted)"}, nil
	}
	return &Identity{Restricted: true,
		Description: fmt.Sprintf("client certificate %s, restricted to projects [%s]", fp, strings.Join(cert.Projects, ", "))}, nil
}

// SeesEverything: the identity lists every project's instances.
func (id *Identity) SeesEverything() bool { return !id.Restricted && !id.Unknowable }
