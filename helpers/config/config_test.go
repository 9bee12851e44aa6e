package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/bounds"
)

// env builds a lookup with no config file unless the map names one.
func env(m map[string]string) func(string) (string, bool) {
	if _, ok := m["CCCI_CONFIG"]; !ok {
		m["CCCI_CONFIG"] = ""
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func socketFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "unix.socket")
	require.NoError(t, os.WriteFile(p, nil, 0o600))
	return p
}

func TestDefaultsPointAtTheLab(t *testing.T) {
	c, err := LoadFrom(env(map[string]string{"CCCI_INCUS_SOCKET": socketFile(t)}))
	require.NoError(t, err)
	assert.Equal(t, "unix", c.Incus.Transport)
	assert.Equal(t, "terraform-ci", c.Machine.Project)
	assert.Equal(t, []string{"terraform-ci"}, c.Guardrails.AllowedProjects)
	assert.Equal(t, int64(4<<30), c.Machine.Memory)
	assert.Equal(t, 22, c.Machine.SSHPort, "sshd's own port")
	assert.Equal(t, []int64{4 << 30, 4e9}, c.Expect.ReferenceMemory, `the plan's "4 GB", either way`)
	assert.Equal(t, []string{"dashboard.ci.lab.test"}, c.Target.TLSServerNames, "the documented default, under the domain")
	assert.Equal(t, int64(12<<30), c.Guardrails.RAMCap)
	assert.Equal(t, 1, c.Guardrails.MaxMachines)
	assert.Equal(t, "container", c.Machine.InstanceType)
	assert.Empty(t, c.Expect.RequiredSecrets, "no key name is a default: what the target declares is required")
}

// An SSH URL names the account to log in as (git@): no secret, accepted.
func TestAnSSHRepoURLMayNameItsAccount(t *testing.T) {
	c, err := LoadFrom(env(map[string]string{"CCCI_INCUS_SOCKET": socketFile(t), "CCCI_SECRETS_REPO_URL": "ssh://git@git.example:2222/cc-ci-secrets.git"}))
	require.NoError(t, err)
	assert.Equal(t, "ssh://git@git.example:2222/cc-ci-secrets.git", c.Target.SecretsRepoURL)
}

func TestFileValuesAndEnvironmentOverride(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ccci.env")
	sock := socketFile(t)
	require.NoError(t, os.WriteFile(file, []byte("# lab\nCCCI_INCUS_SOCKET="+sock+"\nCCCI_MEMORY=\"2GiB\"\nCCCI_PROJECT=terraform-ci\n"), 0o600))
	c, err := LoadFrom(env(map[string]string{"CCCI_CONFIG": file, "CCCI_MEMORY": "3GiB"}))
	require.NoError(t, err)
	assert.Equal(t, int64(3<<30), c.Machine.Memory, "environment wins over the file")
	assert.Equal(t, sock, c.Incus.Socket)
}

// Each bad value is refused with an error that names the key and where the value came from.
func TestBadInputNamesTheKeyAndSource(t *testing.T) {
	sock := socketFile(t)
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad.env")
	require.NoError(t, os.WriteFile(badFile, []byte("CCCI_INCUS_SOCKET="+sock+"\nCCCI_MEMORY=lots\n"), 0o600))
	typoFile := filepath.Join(dir, "typo.env")
	require.NoError(t, os.WriteFile(typoFile, []byte("CCCI_INCUS_SOCKET="+sock+"\nCCCI_MEMORYY=2GiB\n"), 0o600))
	junkFile := filepath.Join(dir, "junk.env")
	require.NoError(t, os.WriteFile(junkFile, []byte("CCCI_PROJECT=terraform-ci\nnot a setting\n"), 0o600))

	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"memory not a size", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_MEMORY": "4 gigs"}, []string{"CCCI_MEMORY", "environment", "not a positive size"}},
		{"memory percentage", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_MEMORY": "50%"}, []string{"CCCI_MEMORY", "percentage"}},
		{"TLS asked at the gateway", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_GATEWAY": "10.99.0.1", "CCCI_TLS_ADDR": "10.99.0.1:443"}, []string{"CCCI_TLS_ADDR", "is the gateway"}},
		{"public material given as itself", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_PUBLIC_MATERIAL": "not-a-fingerprint"}, []string{"CCCI_PUBLIC_MATERIAL", "64 hex digits"}},
		{"a TLS name outside the domain", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_TLS_SERVER_NAME": "ci.example.org"}, []string{"CCCI_TLS_SERVER_NAME", "under CCCI_DOMAIN (ci.lab.test)"}},
		{"a reference size that is not one", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_REFERENCE_MEMORY": "4GiB,four"}, []string{"CCCI_REFERENCE_MEMORY", "four", "not a positive size"}},
		{"memory over cap", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_MEMORY": "16GiB"}, []string{"CCCI_MEMORY", "larger than CCCI_RAM_CAP 12GiB"}},
		{"ssh port out of range", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_SSH_PORT": "70000"}, []string{"CCCI_SSH_PORT", "not a TCP port"}},
		{"ssh port not a number", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_SSH_PORT": "ssh"}, []string{"CCCI_SSH_PORT", "not a whole number"}},
		{"project not allowed", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_PROJECT": "default"}, []string{"CCCI_PROJECT", "not in CCCI_ALLOWED_PROJECTS"}},
		{"bad instance type", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_INSTANCE_TYPE": "vm"}, []string{"CCCI_INSTANCE_TYPE", "container, virtual-machine"}},
		{"bad duration", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_TTL": "2 hours"}, []string{"CCCI_TTL", "positive duration"}},
		{"zero machines", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_MAX_MACHINES": "0"}, []string{"CCCI_MAX_MACHINES"}},
		{"socket missing", map[string]string{"CCCI_INCUS_SOCKET": "/nonexistent/unix.socket"}, []string{"CCCI_INCUS_SOCKET", "cannot read"}},
		{"https without certs", map[string]string{"CCCI_INCUS_URL": "https://127.0.0.1:8443"}, []string{"CCCI_INCUS_CLIENT_CERT", "CCCI_INCUS_CLIENT_KEY", "CCCI_INCUS_SERVER_CERT", "required when CCCI_TRANSPORT=https"}},
		{"https url not https", map[string]string{"CCCI_TRANSPORT": "https", "CCCI_INCUS_URL": "http://x:8443"}, []string{"CCCI_INCUS_URL", "https://host:port"}},
		{"bad value in file", map[string]string{"CCCI_CONFIG": badFile}, []string{"CCCI_MEMORY", "bad.env line 2"}},
		{"junk line in file", map[string]string{"CCCI_CONFIG": junkFile}, []string{"junk.env line 2", "expected CCCI_KEY=value"}},
		{"config file missing", map[string]string{"CCCI_CONFIG": "/nonexistent.env"}, []string{"CCCI_CONFIG", "/nonexistent.env", "cannot open"}},
		{"unknown key in file", map[string]string{"CCCI_CONFIG": typoFile}, []string{"CCCI_MEMORYY", "typo.env line 2", "unknown setting"}},
		{"memory Inf", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_MEMORY": "Inf"}, []string{"CCCI_MEMORY", "not a positive size"}},
		{"teardown reserve too short", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_TEARDOWN_RESERVE": "5s"}, []string{"CCCI_TEARDOWN_RESERVE", "must hold stopping and deleting a machine and proving it gone, a fixed wait of 1m0s"}},
		{"settle not shorter than converge", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_SETTLE": "3m"}, []string{"CCCI_SETTLE", "shorter than CCCI_CONVERGE_TIMEOUT (3m0s)"}},
		{"file key way for another user", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_SSH_USER": "ops"}, []string{"CCCI_SSH_KEY_VIA", "CCCI_SSH_USER must be root"}},
		{"memory NaN GiB", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_MEMORY": "NaNGiB"}, []string{"CCCI_MEMORY", "not a positive size"}},
		{"memory exponent", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_MEMORY": "1e30GiB"}, []string{"CCCI_MEMORY", "not a positive size"}},
		{"cap overflows int64", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_RAM_CAP": "99999999999TiB"}, []string{"CCCI_RAM_CAP", "too large"}},
		{"cap negative", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_RAM_CAP": "-12GiB"}, []string{"CCCI_RAM_CAP", "not a positive size"}},
		{"empty project is not default", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_PROJECT": ""}, []string{"CCCI_PROJECT", "empty"}},
		{"reference outside the allow-list", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_REFERENCE": "lichen/lichen-staging"}, []string{"CCCI_REFERENCE", "not in CCCI_ALLOWED_PROJECTS"}},
		{"reference without project", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_REFERENCE": "/cc-nix-test"}, []string{"CCCI_REFERENCE", "want project/name"}},
		{"label prefix", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_LABEL_PREFIX": "Bad.Prefix"}, []string{"CCCI_LABEL_PREFIX"}},
		{"no machine to keep", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_MACHINE": "none", "SKIP_teardown": "1"}, []string{"CCCI_MACHINE", "none to keep or reuse"}},
		{"a machine setting that is not one", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_MACHINE": "no"}, []string{"CCCI_MACHINE", "create, none"}},
		{"a password in a repo URL", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_SECRETS_REPO_URL": "https://bot:s3cr3t-pw@git.example/cc-ci-secrets.git"},
			[]string{"CCCI_SECRETS_REPO_URL", "https://git.example/cc-ci-secrets.git", "carries credentials"}},
		{"a token as the user of an HTTPS repo URL", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_BASE_REPO_URL": "https://ghp_tok3n@git.example/cc-ci.git"},
			[]string{"CCCI_BASE_REPO_URL", "carries credentials"}},
		{"a password in an SSH repo URL", map[string]string{"CCCI_INCUS_SOCKET": sock, "CCCI_SECRETS_REPO_URL": "ssh://git:pw@git.example/s.git"},
			[]string{"CCCI_SECRETS_REPO_URL", "carries credentials"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadFrom(env(tc.env))
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			for _, secret := range []string{"s3cr3t-pw", "ghp_tok3n", ":pw@"} {
				assert.NotContains(t, err.Error(), secret, "the error repeats no credential")
			}
		})
	}
}

// The time budget is the sum of the bounds a run waits within, and the
// -timeout it names is the smallest whole minute that holds it.
func TestTheTimeBudgetAddsUpTheBounds(t *testing.T) {
	to := Timeouts{CreateTimeout: time.Minute, BootTimeout: 2 * time.Minute, StepTimeout: 2 * time.Minute,
		ConvergeTimeout: 3 * time.Minute, Settle: 5 * time.Second, Hold: 30 * time.Second, TLSReady: time.Minute,
		Scan: time.Minute, Shutdown: 2 * time.Minute, TeardownReserve: 90 * time.Second}
	b := to.Budget(7, 40*time.Minute)
	// create, boot, the blank-state probe, the steps, converge, TLS ready,
	// the hold (the settle window is inside it); sshd judged on the
	// runner, git's record, the
	// declarations' evaluation, three searches of the machine and the
	// repointing rebuild; the restart's shutdown, boot and converge; the
	// reserve.
	assert.Equal(t, time.Minute+2*time.Minute+time.Minute+14*time.Minute+3*time.Minute+time.Minute+30*time.Second+
		2*time.Minute+bounds.Scan+2*time.Minute+3*time.Minute+2*time.Minute+
		2*time.Minute+2*time.Minute+3*time.Minute+90*time.Second, b.Total)
	assert.Contains(t, b.String(), "7 install steps × CCCI_STEP_TIMEOUT 2m0s 14m0s")
	assert.Contains(t, b.String(), "evaluating the declarations on the machine (CCCI_STEP_TIMEOUT) 2m0s")
	assert.Contains(t, b.String(), "3 searches of the machine: store, readable files, what it built (3 × CCCI_SCAN_TIMEOUT) 3m0s")
	assert.Contains(t, b.String(), "restart: clean shutdown, then a forced stop (CCCI_SHUTDOWN_TIMEOUT) 2m0s")
	assert.Equal(t, 80*time.Second, to.Reserve(240*time.Second), "at most a third of a short -timeout")
	assert.Equal(t, bounds.Destroy, to.Reserve(135*time.Second), "never less than deleting a machine takes")
	assert.Equal(t, 42*time.Minute, to.TimeoutNeeded(7, 0), "42m0s is a whole minute")
	assert.Equal(t, 43*time.Minute, to.TimeoutNeeded(7, 30*time.Second), "what has passed counts")
	assert.Equal(t, 17*time.Minute, to.TimeoutNeeded(0, 0), "no install: create, boot, probe, converge, TLS, hold, restart and reserve, 17m; nothing installed is judged")
	ended := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	assert.Equal(t, 50*time.Second, to.TLSWait(ended, ended.Add(10*time.Second)), "TLS is waited for until CCCI_TLS_READY after the install")
	assert.Equal(t, 3*time.Second, to.TLSWait(ended, ended.Add(time.Hour)), "and later, briefly")
}

// Each fixed wait names the setting that holds it by its key: a misspelt
// key would silently leave the wait unchecked at load.
func TestEveryFixedWaitIsHeldByASetting(t *testing.T) {
	for _, w := range bounds.Table {
		if w.Within == "" {
			continue
		}
		_, ok := Timeouts{}.Setting(w.Within)
		assert.True(t, ok, "%s: %s is not a timeout setting", w.What, w.Within)
	}
}
