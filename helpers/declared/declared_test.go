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
	d := apply(t, config)
	assert.Equal(t, []Secret{
		{Name: "drone/rpc_secret", Key: "drone/rpc_secret", Path: "/run/secrets/drone/rpc_secret", Mode: "0440", Owner: "drone", Group: "gid:0", SopsFile: "secrets/secrets.yaml", Format: "yaml"},
		{Name: "tls_fullchain", Key: "cert", Path: "/var/lib/ci-certs/live/fullchain.pem", Mode: "0444", Owner: "uid:0", Group: "gid:0", SopsFile: "secrets/tls.yaml", Format: "yaml"},
	}, d.Secrets)
	assert.Equal(t, []Template{{Name: "drone.env", Path: "/run/secrets/rendered/drone.env", Mode: "0400", Owner: "drone", Group: "gid:0"}}, d.Templates)
	assert.Equal(t, []string{"cc-ci-swarm.service", "docker.service"}, d.Units, "enabled and wanted by multi-user.target: what every boot starts")
}

// apply evaluates the projection on a configuration, as a run does on the
// machine (with the lab's Nix here).
func apply(t *testing.T, config string) *Declarations {
	t.Helper()
	d, err := Parse("cc-ci", evalJSON(t, Apply, config))
	require.NoError(t, err)
	return d
}

// evalJSON evaluates projection on config with Nix, as `nix eval --json
// --apply` does on the machine.
func evalJSON(t *testing.T, projection, config string) []byte {
	t.Helper()
	if _, err := exec.LookPath("nix-instantiate"); err != nil {
		t.Skip("no nix-instantiate on this machine (make lab-up installs it)")
	}
	out, err := exec.Command("nix-instantiate", "--eval", "--strict", "--json", "--expr", "("+projection+") "+config).Output()
	var stderr []byte
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	require.NoError(t, err, "%s", stderr)
	return out
}

// config.sops as a NixOS host's module system yields it: every option of
// sops-nix's secretType and template type spelled, with its default
// (Mic92/sops-nix 56b2406 modules/sops/default.nix: owner and group null,
// uid and gid 0, format "yaml", restartUnits [], neededForUsers false;
// templates/default.nix the same owners) — the shape `nix eval --json`
// prints. A secret that names no owner belongs to uid 0; one owned by its
// service user (the NixOS nginx pattern) has that user's group, as the
// module system computes it.
func TestTheProjectionReadsSopsNixOptionsAsTheModuleSystemYieldsThem(t *testing.T) {
	config := `{ sops = {
	  defaultSopsFile = "` + store + `secrets/secrets.yaml";
	  secrets = {
	    webhook_hmac = { name = "webhook_hmac"; key = "webhook_hmac"; path = "/run/secrets/webhook_hmac"; format = "yaml"; mode = "0400";
	      owner = null; uid = 0; group = null; gid = 0; sopsFile = "` + store + `secrets/secrets.yaml"; sopsFileHash = "";
	      restartUnits = [ ]; reloadUnits = [ ]; neededForUsers = false; };
	    "drone/rpc_secret" = { name = "drone/rpc_secret"; key = "drone/rpc_secret"; path = "/run/secrets/drone/rpc_secret"; format = "yaml"; mode = "0400";
	      owner = "drone"; uid = 0; group = "drone"; gid = 0; sopsFile = "` + store + `secrets/secrets.yaml"; sopsFileHash = "";
	      restartUnits = [ "drone.service" ]; reloadUnits = [ ]; neededForUsers = false; };
	  };
	  templates."registry.env" = { name = "registry.env"; path = "/run/secrets/rendered/registry.env"; mode = "0400";
	    owner = null; uid = 0; group = null; gid = 0; content = "x"; file = "/nix/store/x"; restartUnits = [ ]; reloadUnits = [ ]; };
	};
	users.users.drone = { group = "drone"; isSystemUser = true; };
	systemd.services = { }; }`
	d := apply(t, config)
	assert.Equal(t, []Secret{
		{Name: "drone/rpc_secret", Key: "drone/rpc_secret", Path: "/run/secrets/drone/rpc_secret", Mode: "0400", Owner: "drone", Group: "drone", SopsFile: "secrets/secrets.yaml", Format: "yaml"},
		{Name: "webhook_hmac", Key: "webhook_hmac", Path: "/run/secrets/webhook_hmac", Mode: "0400", Owner: "uid:0", Group: "gid:0", SopsFile: "secrets/secrets.yaml", Format: "yaml"},
	}, d.Secrets)
	assert.Equal(t, []Template{{Name: "registry.env", Path: "/run/secrets/rendered/registry.env", Mode: "0400", Owner: "uid:0", Group: "gid:0"}}, d.Templates)
	// An owner whose group is left to sops-nix's default: the user's group.
	d = apply(t, `{ sops.defaultSopsFile = "`+store+`s.yaml"; sops.secrets.a = { owner = "nginx"; }; users.users.nginx.group = "www"; }`)
	assert.Equal(t, "www", d.Secrets[0].Group)
}

// A file's owner matches the declaration by name, or by number when the
// declaration names none.
func TestOwnedByNameOrNumber(t *testing.T) {
	assert.True(t, OwnedBy("uid:0", "root", "0"))
	assert.False(t, OwnedBy("uid:0", "drone", "996"))
	assert.True(t, OwnedBy("drone", "drone", "996"))
	assert.False(t, OwnedBy("drone", "root", "0"))
	assert.True(t, OwnedBy("gid:0", "root", "0"))
}

// The declarations are the target's output: each field is validated.
func TestBadDeclarationsAreRefusedNamingTheOption(t *testing.T) {
	secret := func(field, value string) string {
		s := map[string]string{"name": "a", "key": "a", "path": "/run/secrets/a", "mode": "0400", "owner": "root", "group": "root", "sopsFile": store + "secrets.yaml", "format": "yaml"}
		s[field] = value
		return `{"secrets": {"a": {"name": "` + s["name"] + `", "key": "` + s["key"] + `", "path": "` + s["path"] + `", "mode": "` + s["mode"] +
			`", "owner": "` + s["owner"] + `", "group": "` + s["group"] + `", "sopsFile": "` + s["sopsFile"] + `", "format": "` + s["format"] + `"}}, "templates": {}}`
	}
	_, err := Parse("h", []byte(secret("mode", "0400")))
	require.NoError(t, err, "the good one")
	_, err = Parse("h", []byte(secret("key", "")))
	require.NoError(t, err, `key = "": the whole file, as sops-nix installs it`)
	for _, c := range []struct{ field, value, want string }{
		{"name", "../../etc/shadow", "is not a file name under /run/secrets"},
		{"name", "a/./b", "is not a file name"},
		{"path", "run/secrets/a", "not a clean absolute path"},
		{"path", "/run/secrets/../../etc/x", "not a clean absolute path"},
		{"mode", "rw-r--r--", "not an octal file mode"},
		{"owner", "root; rm -rf /", "not a user or group name"},
		{"sopsFile", "/home/op/secrets.yaml", "not a file of a flake input in the store"},
		{"sopsFile", store + "../x", "not a file of a flake input"},
		{"format", "toml", `format "toml" is none of sops-nix's`},
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

// A unit the base's own modules define and something other than
// multi-user.target wants (a reconcile unit wanted by docker.service) must
// converge too; one nixpkgs defines (a file outside the base's source), or
// one nothing wants (started by a timer), is not added. The definitions'
// shape is the module system's: each option's definitionsWithLocations is
// a list of { file; value; } after mkIf and mkMerge are discharged
// (nixpkgs lib/modules.nix, mergeDefinitions' defsFinal).
func TestUnitsTheBaseDefinesAndAnythingWantsMustConverge(t *testing.T) {
	d := apply(t, `{ systemd.services = {
	  cc-ci-proxy = { wantedBy = [ "multi-user.target" ]; };
	  cc-ci-reconcile = { wantedBy = [ "docker.service" ]; };
	  cc-ci-cleanup = { startAt = "daily"; };
	  cc-ci-off = { enable = false; wantedBy = [ "docker.service" ]; };
	  nixpkgs-thing = { wantedBy = [ "sysinit.target" ]; };
	}; }`)
	assert.Equal(t, []string{"cc-ci-proxy.service"}, d.Units, "before Own: multi-user.target's alone")
	const source = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-source"
	h := `{ options.systemd.services.definitionsWithLocations = [
	  { file = "` + source + `/modules/ci.nix"; value = { cc-ci-proxy = {}; cc-ci-reconcile = {}; cc-ci-cleanup = {}; cc-ci-off = {}; }; }
	  { file = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-source/nixos/modules/x.nix"; value = { nixpkgs-thing = {}; }; }
	]; }`
	out, err := exec.Command("nix-instantiate", "--eval", "--strict", "--json", "--expr", "("+Defined+") "+h).Output()
	require.NoError(t, err)
	require.NoError(t, d.Own(out, source))
	assert.Equal(t, []string{"cc-ci-proxy.service", "cc-ci-reconcile.service"}, d.Units)

	assert.ErrorContains(t, d.Own(out, "/tmp/base"), "not a store path")
	// A configuration without the module system's options (not NixOS) adds nothing.
	out, err = exec.Command("nix-instantiate", "--eval", "--strict", "--json", "--expr", "("+Defined+") {}").Output()
	require.NoError(t, err)
	assert.JSONEq(t, "[]", string(out))
}

// config.services.openssh as NixOS's module yields it (nixpkgs
// nixos/modules/services/networking/ssh/sshd.nix): every option the
// projection reads spelled with the module's value — settings a freeform
// submodule whose declared options default to sshd's values or null, the
// merged authorizedKeysFiles of authorizedKeysInHomedir = true — and
// users.users.root as users-groups.nix declares it.
func TestTheSSHProjectionReadsNixOSsOpensshOptions(t *testing.T) {
	config := `{ services.openssh = {
	  enable = true; startWhenNeeded = false; ports = [ 22 ]; openFirewall = true;
	  listenAddresses = [ { addr = "0.0.0.0"; port = null; } ];
	  authorizedKeysInHomedir = true; authorizedKeysFiles = [ "%h/.ssh/authorized_keys" "/etc/ssh/authorized_keys.d/%u" ];
	  authorizedKeysCommand = "none"; authorizedKeysCommandUser = "nobody";
	  settings = { AuthorizedPrincipalsFile = "none"; LogLevel = "INFO"; UsePAM = true; UseDns = false; X11Forwarding = false;
	    PasswordAuthentication = false; PermitRootLogin = "prohibit-password"; KbdInteractiveAuthentication = true;
	    GatewayPorts = "no"; StrictModes = true; AllowUsers = null; DenyUsers = null; AllowGroups = [ "root" "wheel" ]; DenyGroups = null;
	    PrintMotd = false; PubkeyAuthentication = true; AuthorizedKeysFile = [ "%h/.ssh/authorized_keys" ]; };
	  extraConfig = "Banner none\n";
	};
	users.users = { root = { group = "root"; extraGroups = [ "wheel" ]; }; alice = { group = ""; extraGroups = [ "users" ]; }; }; }`
	s, err := ParseSSH(evalJSON(t, SSHApply, config))
	require.NoError(t, err)
	yes := true
	keys, groups := "%h/.ssh/authorized_keys", []string{"root", "wheel"}
	prl := "prohibit-password"
	assert.Equal(t, &SSH{Declared: true, Enable: true, Ports: []int{22}, ListenAddresses: []ListenAddr{{Addr: "0.0.0.0"}},
		KeysFiles: []string{"%h/.ssh/authorized_keys", "/etc/ssh/authorized_keys.d/%u"}, ExtraConfig: "Banner none\n",
		Settings: SSHSettings{PermitRootLogin: &prl, PubkeyAuthentication: &yes, AuthorizedKeysFile: &keys, AllowGroups: &groups},
		Groups:   map[string][]string{"root": {"root", "wheel"}, "alice": {"users"}}}, s)

	// The module's defaults where a configuration spells nothing; none at
	// all where it has no services.openssh (the lab's miniature).
	s, err = ParseSSH(evalJSON(t, SSHApply, `{ services.openssh = { }; }`))
	require.NoError(t, err)
	assert.Equal(t, &SSH{Declared: true, Ports: []int{22}, ListenAddresses: []ListenAddr{}, KeysFiles: []string{},
		Settings: SSHSettings{PermitRootLogin: &prl}, Groups: map[string][]string{}}, s)
	assert.Equal(t, []string{"root"}, s.GroupsOf("root"), "root's group when users.users names none")
	s, err = ParseSSH(evalJSON(t, SSHApply, `{ }`))
	require.NoError(t, err)
	assert.False(t, s.Declared)
}

// /run/secrets holds each secret under its name, each template under
// rendered/, and a link sops-nix makes at a declared path inside it (a
// path elsewhere is no entry of it); each entry names its secret.
func TestRunSecretsHoldsWhatSopsNixPutsThere(t *testing.T) {
	d := &Declarations{
		Secrets: []Secret{
			{Name: "webhook_hmac", Path: "/run/secrets/webhook_hmac"},
			{Name: "drone/rpc", Path: "/run/secrets/drone-rpc.env"},               // a path of its own inside /run/secrets
			{Name: "tls/fullchain", Path: "/var/lib/ci-certs/live/fullchain.pem"}, // outside: not listed there
		},
		Templates: []Template{
			{Name: "registry.env", Path: "/run/secrets/rendered/registry.env"},
			{Name: "drone.env", Path: "/run/secrets/drone/drone.env"},
		},
	}
	assert.Equal(t, map[string]string{
		"webhook_hmac": "webhook_hmac", "drone/rpc": "drone/rpc", "drone-rpc.env@": "drone/rpc", "tls/fullchain": "tls/fullchain",
		"rendered/registry.env": "rendered/registry.env", "rendered/drone.env": "rendered/drone.env", "drone/drone.env@": "rendered/drone.env",
	}, d.InSecretsDir())
}
