package doctor_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/doctor"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/incus/incustest"
	"github.com/cc-ci/acceptance/helpers/labtarget"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/redact"
)

// host is a real host as the fake answers for it: the project, a VM image,
// the running reference, and a target served by the real git backend.
type host struct {
	fake *incustest.Server
	env  map[string]string
}

func newHost(t *testing.T, defect ...string) *host {
	t.Helper()
	tg, baseURL, secretsURL := labtarget.Served(t, defect...)

	f, err := incustest.New(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(f.Close)
	f.Projects["terraform-ci"] = true
	f.Images["incus-base"] = incustest.Image{Type: incus.VirtualMachine, DeclaresSecureBootOff: true}
	c, err := incus.New(incus.Config{Socket: f.Socket})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, c.CreateInstance(ctx, incus.InstanceSpec{Name: "cc-nix-test", Project: "terraform-ci", Type: incus.VirtualMachine,
		ImageAlias: "incus-base", Config: map[string]string{"limits.memory": "4GiB", "security.secureboot": "false"}}))
	require.NoError(t, c.SetState(ctx, "terraform-ci", "cc-nix-test", "start", false))
	f.PutFile("terraform-ci", "cc-nix-test", "/run/current-system", incustest.File{Link: "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-cc-ci-24.11"})

	return &host{fake: f, env: map[string]string{
		"CCCI_CONFIG": "", "CCCI_INCUS_SOCKET": f.Socket, "CCCI_INSTANCE_TYPE": "virtual-machine", "CCCI_IMAGE": "incus-base",
		"CCCI_BASE_REPO_URL":    baseURL,
		"CCCI_SECRETS_REPO_URL": secretsURL,
		"CCCI_AGE_KEY_FILE":     tg.BootstrapKeyFile(),
	}}
}

func (h *host) doctor(t *testing.T, timeout time.Duration) *doctor.Report {
	t.Helper()
	cfg, err := config.LoadFrom(func(k string) (string, bool) { v, ok := h.env[k]; return v, ok })
	require.NoError(t, err)
	return doctor.Run(context.Background(), doctor.Options{Config: cfg, Timeout: timeout, Redact: &redact.Redactor{}})
}

func row(r *doctor.Report, check string) doctor.Row {
	for _, x := range r.Rows {
		if x.Check == check {
			return x
		}
	}
	return doctor.Row{}
}

// The doctor reads and changes nothing: against a host a run could start
// on, every row holds, and Incus saw GET requests only.
func TestTheDoctorPassesAReadyHostWithGETsOnly(t *testing.T) {
	h := newHost(t)
	before := len(h.fake.Requests())
	r := h.doctor(t, 150*time.Minute)
	var out strings.Builder
	r.Write(&out)
	t.Log("\n" + out.String())
	require.True(t, r.Ready(), "a ready host:\n%s", out.String())
	for _, req := range h.fake.Requests()[before:] {
		assert.True(t, strings.HasPrefix(req, "GET "), "the doctor sent %q: it must change nothing", req)
	}
	assert.Contains(t, row(r, "reference").Detail, "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-cc-ci-24.11", "read by the file API")
	assert.Contains(t, row(r, "install.md").Detail, "blocks, linted")
	assert.Equal(t, doctor.OK, row(r, "sshd after the switch").Status, "the target's services.openssh, evaluated on this runner")
	for _, x := range r.Rows {
		assert.NotContains(t, x.Detail, "\n", "row %s: one line, or the table breaks", x.Check)
	}
}

// Each blocker an operator meets first is named, with its fix.
func TestTheDoctorNamesEachBlocker(t *testing.T) {
	for _, c := range []struct {
		name, check, detail string
		breakIt             func(h *host)
		timeout             time.Duration
		defect              string // the target served, if not the good one
	}{
		{"wrong image type", "image", `is a container image; CCCI_INSTANCE_TYPE is virtual-machine`,
			func(h *host) { h.fake.Images["incus-base"] = incustest.Image{Type: incus.Container} }, 0, ""},
		{"secure boot the image cannot do", "image", "declares requirements.secureboot=false, but CCCI_VM_SECUREBOOT=profile",
			func(h *host) { h.env["CCCI_VM_SECUREBOOT"] = "profile" }, 0, ""},
		{"restricted certificate", "credentials", "restricted to projects [terraform-ci]",
			func(h *host) { h.fake.Restricted = []string{"terraform-ci"} }, 0, ""},
		{"missing project", "project", "terraform-ci: incus GET /1.0/projects/terraform-ci",
			func(h *host) { delete(h.fake.Projects, "terraform-ci") }, 0, ""},
		{"delete-protected profile", "default profile", "security.protection.delete=true",
			func(h *host) { h.fake.Profile["security.protection.delete"] = "true" }, 0, ""},
		{"unreachable repo", "repos", "fetch base repo http://127.0.0.1:1/",
			func(h *host) { h.env["CCCI_BASE_REPO_URL"] = "http://127.0.0.1:1/good/cc-ci.git" }, 0, ""},
		{"too-short -timeout", "-timeout", "10m0s cannot hold", func(*host) {}, 10 * time.Minute, ""},
		{"sshd that refuses root", "sshd after the switch", `PermitRootLogin is "no": sshd refuses root's key`, func(*host) {}, 0, "sshd-refuses-root"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var h *host
			if c.defect != "" {
				h = newHost(t, c.defect)
			} else {
				h = newHost(t)
			}
			c.breakIt(h)
			before := len(h.fake.Requests())
			r := h.doctor(t, c.timeout)
			var out strings.Builder
			r.Write(&out)
			assert.False(t, r.Ready(), "a run could not start:\n%s", out.String())
			got := row(r, c.check)
			assert.Equal(t, doctor.Blocker, got.Status, "row %q:\n%s", c.check, out.String())
			assert.Contains(t, got.Detail, c.detail)
			assert.Contains(t, out.String(), "a run could NOT start")
			for _, req := range h.fake.Requests()[before:] {
				assert.True(t, strings.HasPrefix(req, "GET "), "the doctor sent %q", req)
			}
		})
	}
}

// Against the lab: every row holds and the exit status is 0 (ccci doctor).
func TestTheDoctorPassesTheLab(t *testing.T) {
	labtest.Client(t, "unix")
	cmd := exec.Command("go", "run", "../../cmd/ccci", "doctor", "-timeout", "40m")
	cmd.Env = append(os.Environ(), "CCCI_CONFIG="+config.LabSettings)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "ccci doctor against the lab:\n%s", out)
	assert.Contains(t, string(out), "doctor: a run could start")
	assert.NotContains(t, string(out), "BLOCKER")
}
