package declared

import (
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const store = "/nix/store/wb5a52f61f553r5wqlws3gw03bd3x04h-source/"

// What the projection makes of a configuration that spells only some
// options: sops-nix's defaults, a nested name, the default sops file.
func TestApplyFillsSopsNixDefaults(t *testing.T) {
	if _, err := exec.LookPath("nix-instantiate"); err != nil {
		t.Skip("no nix-instantiate on this machine (make lab-up installs it)")
	}
	config := `{ sops = {
	  defaultSopsFile = "` + store + `secrets/secrets.yaml";
	  secrets = {
	    "drone/rpc_secret" = { owner = "drone"; mode = "0440"; };
	    tls_fullchain = { key = "cert"; path = "/var/lib/ci-certs/live/fullchain.pem"; mode = "0444"; sopsFile = "` + store + `secrets/tls.yaml"; };
	  };
	  templates."drone.env" = { owner = "drone"; };
	};
	systemd.services = {
	  cc-ci-swarm = { wantedBy = [ "multi-user.target" ]; };
	  docker = { wantedBy = [ "multi-user.target" ]; enable = true; };
	  disabled = { wantedBy = [ "multi-user.target" ]; enable = false; };
	  on-demand = { };
	}; }`
	out, err := exec.Command("nix-instantiate", "--eval", "--strict", "--json", "--expr", "("+Apply+") "+config).Output()
	var stderr []byte
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	require.NoError(t, err, "%s", stderr)
	d, err := Parse("cc-ci", out)
	require.NoError(t, err)
	assert.Equal(t, []Secret{
		{Name: "drone/rpc_secret", Key: "drone/rpc_secret", Path: "/run/secrets/drone/rpc_secret", Mode: "0440", Owner: "drone", Group: "root", SopsFile: "secrets/secrets.yaml"},
		{Name: "tls_fullchain", Key: "cert", Path: "/var/lib/ci-certs/live/fullchain.pem", Mode: "0444", Owner: "root", Group: "root", SopsFile: "secrets/tls.yaml"},
	}, d.Secrets)
	assert.Equal(t, []Template{{Name: "drone.env", Path: "/run/secrets/rendered/drone.env", Mode: "0400", Owner: "drone", Group: "root"}}, d.Templates)
	assert.Equal(t, []string{"cc-ci-swarm.service", "docker.service"}, d.Units, "enabled and wanted by multi-user.target: what every boot starts")
}

// The declarations are the target's output: each field is validated.
func TestBadDeclarationsAreRefusedNamingTheOption(t *testing.T) {
	secret := func(field, value string) string {
		s := map[string]string{"name": "a", "key": "a", "path": "/run/secrets/a", "mode": "0400", "owner": "root", "group": "root", "sopsFile": store + "secrets.yaml"}
		s[field] = value
		return `{"secrets": {"a": {"name": "` + s["name"] + `", "key": "` + s["key"] + `", "path": "` + s["path"] + `", "mode": "` + s["mode"] +
			`", "owner": "` + s["owner"] + `", "group": "` + s["group"] + `", "sopsFile": "` + s["sopsFile"] + `"}}, "templates": {}}`
	}
	_, err := Parse("h", []byte(secret("mode", "0400")))
	require.NoError(t, err, "the good one")
	for _, c := range []struct{ field, value, want string }{
		{"name", "../../etc/shadow", "is not a file name under /run/secrets"},
		{"name", "a/./b", "is not a file name"},
		{"path", "run/secrets/a", "not a clean absolute path"},
		{"path", "/run/secrets/../../etc/x", "not a clean absolute path"},
		{"mode", "rw-r--r--", "not an octal file mode"},
		{"owner", "root; rm -rf /", "not a user or group name"},
		{"sopsFile", "/home/op/secrets.yaml", "not a file of a flake input in the store"},
		{"sopsFile", store + "../x", "not a file of a flake input"},
		{"key", "", "no key"},
	} {
		_, err := Parse("h", []byte(secret(c.field, c.value)))
		assert.ErrorContains(t, err, `sops.secrets."a"`, "%s=%q", c.field, c.value)
		assert.ErrorContains(t, err, c.want, "%s=%q", c.field, c.value)
	}
	_, err = Parse("h", []byte("not json"))
	assert.ErrorContains(t, err, "declarations of h")
}

func TestAUnitNameThatIsNotOneIsRefused(t *testing.T) {
	_, err := Parse("h", []byte(`{"secrets": {}, "templates": {}, "units": ["x; reboot"]}`))
	assert.ErrorContains(t, err, `systemd.services."x; reboot": not a unit name`)
}
