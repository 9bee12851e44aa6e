package incus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeIncus is an httptest TLS server that answers like Incus does.
func fakeIncus(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return pinnedClient(t, srv.URL, srv.Certificate().Raw)
}

// pinnedClient is a client of url with a fresh client certificate that pins
// the server certificate pinDER.
func pinnedClient(t *testing.T, url string, pinDER []byte) *Client {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "server.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pinDER}), 0o600))
	certPEM, keyPEM := selfSigned(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "client.crt"), certPEM, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "client.key"), keyPEM, 0o600))
	c, err := New(Config{URL: url, ClientCert: filepath.Join(dir, "client.crt"),
		ClientKey: filepath.Join(dir, "client.key"), ServerCert: filepath.Join(dir, "server.crt")})
	require.NoError(t, err)
	return c
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func incusError(w http.ResponseWriter, code int, msg string) {
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, `{"type":"error","error":%q,"error_code":%d}`, msg, code)
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		code     int
		msg      string
		sentinel error
	}{
		{404, "Instance not found", ErrNotFound},
		{403, "not authorized", ErrForbidden},
		{409, "Instance is busy", ErrConflict},
	}
	for _, tc := range cases {
		t.Run(tc.msg, func(t *testing.T) {
			c := fakeIncus(t, func(w http.ResponseWriter, r *http.Request) { incusError(w, tc.code, tc.msg) })
			_, err := c.Instance(context.Background(), "terraform-ci", "x")
			require.ErrorIs(t, err, tc.sentinel)
			var ie *Error
			require.ErrorAs(t, err, &ie)
			assert.Equal(t, tc.code, ie.StatusCode)
			assert.Contains(t, err.Error(), tc.msg, "Incus's own message is kept")
			assert.Contains(t, err.Error(), "/1.0/instances/x", "the call is named")
		})
	}
}

func TestUntrustedClientIsForbiddenBeforeAnythingElse(t *testing.T) {
	c := fakeIncus(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"type":"sync","status_code":200,"metadata":{"auth":"untrusted","api_version":"1.0"}}`))
	})
	_, err := c.Server(context.Background())
	require.ErrorIs(t, err, ErrForbidden)
	assert.Contains(t, err.Error(), "not trusted")
	assert.Contains(t, err.Error(), c.Endpoint)
}

func TestFailedOperationCarriesIncusReason(t *testing.T) {
	c := fakeIncus(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/1.0/instances":
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"type":"async","status_code":100,"operation":"/1.0/operations/abc"}`))
		case "/1.0/operations/abc/wait":
			_, _ = w.Write([]byte(`{"type":"sync","status_code":200,"metadata":{"id":"abc","description":"Creating instance","status":"Failure","err":"Failed getting image: alias not found"}}`))
		}
	})
	err := c.CreateInstance(context.Background(), InstanceSpec{Name: "x", Project: "terraform-ci", ImageAlias: "nope", Type: Container})
	require.True(t, IsOperationFailure(err), "%v", err)
	assert.Contains(t, err.Error(), "alias not found")
	assert.Contains(t, err.Error(), `image "nope"`)
}

func TestWrongServerCertificateIsRefused(t *testing.T) {
	c := fakeIncus(t, func(w http.ResponseWriter, r *http.Request) {})
	// httptest's servers share one certificate: give this one its own.
	certPEM, keyPEM := selfSigned(t)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	other.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	other.StartTLS()
	defer other.Close()
	c.base = other.URL // a server whose cert is not the pinned one
	_, err = c.Server(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is not the pinned one")
}

// serverCert is a certificate for names only (no IP address), signed by
// parent (self-signed when parent is nil), as incusd generates its own
// (shared/tls/cert.go: the hostname, 127.0.0.1 and ::1 — here not even those).
func serverCert(t *testing.T, names []string, isCA bool, parent *tls.Certificate) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		IsCA: isCA, BasicConstraintsValid: isCA}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	signer, signerKey := tmpl, any(key)
	if parent != nil {
		signer, signerKey = parent.Leaf, parent.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TestPinnedCertificateWhateverTheHostName: the URL's host name is not what
// identifies Incus; the pinned certificate is (as for the incus CLI). A
// server whose certificate names only "b1" is reached as 127.0.0.1; one whose
// certificate is neither the pin nor signed by it is refused.
func TestPinnedCertificateWhateverTheHostName(t *testing.T) {
	ca := serverCert(t, []string{"cluster-ca"}, true, nil)
	self := serverCert(t, []string{"b1"}, false, nil)
	signed := serverCert(t, []string{"b1"}, false, &ca)
	stranger := serverCert(t, []string{"b1"}, false, nil)
	cases := []struct {
		name   string
		serves tls.Certificate
		pin    tls.Certificate
		ok     bool
	}{
		{"the pinned self-signed certificate, named for another host", self, self, true},
		{"a certificate the pinned one signed (a cluster CA)", signed, ca, true},
		{"another certificate with the same name", stranger, self, false},
		{"a CA-signed certificate when the leaf is pinned", signed, self, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte(`{"type":"sync","status_code":200,"metadata":{"auth":"trusted","api_version":"1.0"}}`))
			}))
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{tc.serves}}
			srv.StartTLS()
			defer srv.Close()
			c := pinnedClient(t, srv.URL, tc.pin.Certificate[0])
			require.Contains(t, srv.URL, "127.0.0.1", "dialled by an address the certificate does not name")
			_, err := c.Server(context.Background())
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "is not the pinned one")
		})
	}
}

func TestNotAnIncusAnswer(t *testing.T) {
	c := fakeIncus(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(502)
		_, _ = w.Write([]byte("<html>bad gateway</html>"))
	})
	_, err := c.Server(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not an Incus response (HTTP 502)")
}

func TestContextDeadlineIsHonoured(t *testing.T) {
	c := fakeIncus(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Server(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second)
}

func TestTargetIsSentForClusterPlacement(t *testing.T) {
	var gotTarget string
	c := fakeIncus(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/1.0/instances" {
			gotTarget = r.URL.Query().Get("target")
		}
		incusError(w, 500, "stop here")
	})
	c.target = "b1"
	_ = c.CreateInstance(context.Background(), InstanceSpec{Name: "x", Project: "p", ImageAlias: "a", Type: Container})
	assert.Equal(t, "b1", gotTarget)
}

func TestConfigErrorsNameTheFile(t *testing.T) {
	_, err := New(Config{URL: "https://127.0.0.1:8443", ClientCert: "/nonexistent/client.crt", ClientKey: "/nonexistent/client.key", ServerCert: "/x"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/nonexistent/client.crt")
	_, err = New(Config{})
	require.Error(t, err)
	_, err = New(Config{URL: "http://plain:8443", ClientCert: "a", ClientKey: "b", ServerCert: "c"})
	require.Error(t, err)
}

// incusd ends the exec operation in failure when the program is not found
// or not executable (driver_common.go: ErrExecCommandNotFound …), instead of
// returning the exit code: the client gives the caller the exit code a
// shell would, so every caller judges one thing.
func TestACommandThatDidNotRunIsAnExitCode(t *testing.T) {
	for msg, code := range map[string]int{"Command not found": 127, "Command not executable": 126} {
		t.Run(msg, func(t *testing.T) {
			var argv []string
			c := fakeIncus(t, func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/1.0/instances/x/exec":
					var body struct{ Command []string }
					_ = json.NewDecoder(r.Body).Decode(&body)
					argv = body.Command
					w.WriteHeader(http.StatusAccepted)
					_, _ = w.Write([]byte(`{"type":"async","status_code":100,"operation":"/1.0/operations/e1"}`))
				case "/1.0/operations/e1/wait":
					_, _ = fmt.Fprintf(w, `{"type":"sync","status_code":200,"metadata":{"id":"e1","status":"Failure","status_code":400,"err":%q,"metadata":{"return":%d}}}`, msg, code)
				}
			})
			res, err := c.Exec(context.Background(), "p", "x", []string{"readlink", "-f", "/run/current-system"}, nil)
			require.NoError(t, err)
			assert.Equal(t, code, res.ExitCode)
			assert.Contains(t, string(res.Stderr), msg)
			assert.Equal(t, []string{"/bin/sh", "-c", `exec "$@"`, "sh", "readlink", "-f", "/run/current-system"}, argv,
				"run through /bin/sh, which looks the program up on GuestPATH")
		})
	}
}

// The NICs' host-side devices are what incusd recorded at start, for NIC
// devices only (a disk has none); a NIC with none (a macvlan one, an
// infiniband device) cannot be observed, and is an error naming it.
func TestNICDevicesAreTheNICsHostSides(t *testing.T) {
	in := Instance{
		Name: "m",
		Config: map[string]string{"volatile.eth0.host_name": "veth5c1e", "volatile.eth1.host_name": "tap0a1b",
			"volatile.root.host_name": "not-a-nic"},
		ExpandedDevices: map[string]map[string]string{"eth0": {"type": "nic"}, "eth1": {"type": "nic"}, "root": {"type": "disk"}},
	}
	devs, err := in.NICDevices()
	require.NoError(t, err)
	assert.Equal(t, []string{"tap0a1b", "veth5c1e"}, devs)
	in.ExpandedDevices["eth2"] = map[string]string{"type": "nic", "nictype": "macvlan", "parent": "eno1"}
	_, err = in.NICDevices()
	assert.ErrorContains(t, err, "NIC eth2 (nictype macvlan) has no host-side device")
	delete(in.ExpandedDevices, "eth2")
	in.ExpandedDevices["ib0"] = map[string]string{"type": "infiniband"}
	_, err = in.NICDevices()
	assert.ErrorContains(t, err, "NIC ib0 (infiniband)")
}

// An operation longer than one long-poll slice: incusd 6.0.x answers the
// slice's end as an error ("context deadline exceeded", error_code 500, under
// HTTP 200), later versions with the operation still "Running". Either way
// the wait goes on until the operation ends; an operation that itself
// failed with that text is a failure all the same.
func TestAnOperationLongerThanOneWaitSliceIsWaitedFor(t *testing.T) {
	for _, tc := range []struct {
		name, sliceEnd, final string
		failed                bool
	}{
		{"incusd 6.0", `{"type":"error","error":"context deadline exceeded","error_code":500}`, "Success", false},
		{"incusd 6.x", `{"type":"sync","status_code":200,"metadata":{"id":"abc","status":"Running","status_code":103}}`, "Success", false},
		{"failed with that text", `{"type":"error","error":"context deadline exceeded","error_code":500}`, "Failure", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			waits := 0
			c := fakeIncus(t, func(w http.ResponseWriter, r *http.Request) {
				running := waits < 3
				switch r.URL.Path {
				case "/1.0/instances":
					w.WriteHeader(http.StatusAccepted)
					_, _ = w.Write([]byte(`{"type":"async","status_code":100,"operation":"/1.0/operations/abc"}`))
				case "/1.0/operations/abc/wait":
					waits++
					if running || tc.failed {
						_, _ = w.Write([]byte(tc.sliceEnd))
						return
					}
					fmt.Fprintf(w, `{"type":"sync","status_code":200,"metadata":{"id":"abc","status":%q}}`, tc.final)
				case "/1.0/operations/abc":
					status := "Running"
					if !running {
						status = tc.final
					}
					fmt.Fprintf(w, `{"type":"sync","status_code":200,"metadata":{"id":"abc","status":%q,"err":"context deadline exceeded"}}`, status)
				}
			})
			err := c.CreateInstance(context.Background(), InstanceSpec{Name: "x", Project: "terraform-ci", ImageAlias: "big", Type: Container})
			assert.GreaterOrEqual(t, waits, 3, "waited slice after slice")
			if tc.failed {
				require.True(t, IsOperationFailure(err), "%v", err)
				assert.Contains(t, err.Error(), "context deadline exceeded")
				return
			}
			require.NoError(t, err)
		})
	}
}
