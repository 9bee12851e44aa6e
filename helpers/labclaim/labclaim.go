// Package labclaim decides whether an Incus is the embedded lab's: the lab
// tooling changes only an Incus that it initialised itself. Such an Incus
// carries a marker in its server config; an Incus without the marker is
// claimed only when it is empty (a fresh install), and anything else — a
// real host's Incus, say — is refused before a single change.
package labclaim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/cc-ci/acceptance/helpers/incus"
)

// The server config key and value that mark the lab's Incus.
const (
	MarkerKey   = "user.ccci-lab.owner"
	MarkerValue = "cc-ci-lab"
)

// Report is what an Incus holds that says whether it is the lab's.
type Report struct {
	Marked   bool     // the server config carries the lab's marker
	Findings []string // what makes an unmarked Incus not empty
}

// Empty reports whether an unmarked Incus holds nothing at all.
func (r Report) Empty() bool { return len(r.Findings) == 0 }

// NotTheLabError is the refusal: this Incus is not the lab's.
type NotTheLabError struct {
	Endpoint string
	Findings []string
}

func (e *NotTheLabError) Error() string {
	return fmt.Sprintf("the Incus at %s is not the lab's: it has no %s=%s marker and is not empty (%s). "+
		"The lab changes only an Incus it initialised itself; to run the harness against this Incus, point "+
		"CCCI_CONFIG at a configuration for it (docs/operating.md) instead of bringing up a lab",
		e.Endpoint, MarkerKey, MarkerValue, strings.Join(e.Findings, "; "))
}

// Inspect reads, without changing anything, whether the Incus is marked
// and, if not, what it holds.
func Inspect(ctx context.Context, c *incus.Client) (Report, error) {
	srv, err := c.Server(ctx)
	if err != nil {
		return Report{}, err
	}
	if v, _ := srv.Config[MarkerKey].(string); v == MarkerValue {
		return Report{Marked: true}, nil
	}
	var r Report
	for k, v := range srv.Config {
		if k == "core.https_address" || strings.HasPrefix(k, "cluster.") {
			r.Findings = append(r.Findings, fmt.Sprintf("server config %s=%v", k, v))
		}
	}
	ins, err := c.Instances(ctx, "")
	if err != nil {
		return r, err
	}
	for _, in := range ins {
		r.Findings = append(r.Findings, "instance "+in.Project+"/"+in.Name)
	}
	ps, err := c.Projects(ctx)
	if err != nil {
		return r, err
	}
	for _, p := range ps {
		if p.Name != "default" {
			r.Findings = append(r.Findings, "project "+p.Name)
		}
	}
	pools, err := c.StoragePools(ctx)
	if err != nil {
		return r, err
	}
	for _, p := range pools {
		r.Findings = append(r.Findings, "storage pool "+p.Name)
	}
	nets, err := c.Networks(ctx)
	if err != nil {
		return r, err
	}
	for _, n := range nets {
		if n.Managed {
			r.Findings = append(r.Findings, "managed network "+n.Name)
		}
	}
	return r, nil
}

// Claim marks an empty Incus as the lab's, accepts one already marked, and
// refuses any other without changing it. labCertDER, when given, is the
// lab's own client certificate: an Incus that trusts it was set up by an
// earlier lab (before the marker existed) and is marked too — nobody else
// holds that certificate's key.
func Claim(ctx context.Context, c *incus.Client, labCertDER []byte) (Report, error) {
	r, err := Inspect(ctx, c)
	if err != nil || r.Marked {
		return r, err
	}
	if !r.Empty() {
		trusted, err := trusts(ctx, c, labCertDER)
		if err != nil {
			return r, err
		}
		if !trusted {
			return r, &NotTheLabError{Endpoint: c.Endpoint, Findings: r.Findings}
		}
	}
	if err := c.SetServerConfig(ctx, MarkerKey, MarkerValue); err != nil {
		return r, fmt.Errorf("mark the empty Incus at %s as the lab's: %w", c.Endpoint, err)
	}
	r.Marked = true
	return r, nil
}

func trusts(ctx context.Context, c *incus.Client, der []byte) (bool, error) {
	if len(der) == 0 {
		return false, nil
	}
	sum := sha256.Sum256(der)
	want := hex.EncodeToString(sum[:])
	certs, err := c.Certificates(ctx)
	if err != nil {
		return false, err
	}
	for _, ct := range certs {
		if ct.Fingerprint == want {
			return true, nil
		}
	}
	return false, nil
}

// Require returns an error unless the Incus carries the lab's marker (the
// harness's own lab tests run only against the lab).
func Require(ctx context.Context, c *incus.Client) error {
	r, err := Inspect(ctx, c)
	if err != nil {
		return err
	}
	if !r.Marked {
		return &NotTheLabError{Endpoint: c.Endpoint, Findings: append(r.Findings, "lab tests run only against an Incus that lab/lab.sh up initialised")}
	}
	return nil
}
