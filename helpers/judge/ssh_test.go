package judge

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/declared"
)

// sshFacts is SSHApply's JSON for a NixOS host with sshd enabled, as the
// module system yields it (nixpkgs nixos/modules/services/networking/ssh/
// sshd.nix): ports [ 22 ], no listenAddresses, the merged
// authorizedKeysFiles of authorizedKeysInHomedir = true, PermitRootLogin
// "prohibit-password", the user lists null, extraConfig opening with the
// module's own lines (mkOrder 0). edit changes it as a configuration would.
func sshFacts(t *testing.T, edit func(string) string) *declared.SSH {
	t.Helper()
	j := `{"declared": true, "enable": true, "ports": [22], "listenAddresses": [],
	  "authorizedKeysFiles": ["%h/.ssh/authorized_keys", "/etc/ssh/authorized_keys.d/%u"],
	  "extraConfig": "Banner none\nAddressFamily any\nPort 22\n\nSubsystem sftp /nix/store/x-openssh/libexec/sftp-server \nAuthorizedKeysFile %h/.ssh/authorized_keys /etc/ssh/authorized_keys.d/%u\n\nHostKey /etc/ssh/ssh_host_ed25519_key\nEXTRA",
	  "settings": {"PermitRootLogin": "prohibit-password", "PubkeyAuthentication": null, "AuthorizedKeysFile": null,
	    "AllowUsers": null, "DenyUsers": null, "AllowGroups": null, "DenyGroups": null},
	  "groups": {"root": ["root"], "alice": ["users", "wheel"]}}`
	j = strings.Replace(j, "EXTRA", "", 1)
	if edit != nil {
		j = edit(j)
	}
	s, err := declared.ParseSSH([]byte(j))
	require.NoError(t, err, j)
	return s
}

// The run's way back in after the switch, judged from the declarations:
// NixOS's defaults (and an older NixOS's key files) let it in; each way a
// configuration shuts root's key out is named; a Match block is not judged.
func TestSSHAccessAfterTheSwitch(t *testing.T) {
	set := func(old, new string) func(string) string {
		return func(j string) string { return strings.Replace(j, old, new, 1) }
	}
	extra := func(lines string) func(string) string {
		return func(j string) string {
			return strings.Replace(j, `HostKey /etc/ssh/ssh_host_ed25519_key\n`, `HostKey /etc/ssh/ssh_host_ed25519_key\n`+lines, 1)
		}
	}
	for _, c := range []struct {
		name string
		edit func(string) string
		want string // "" = no problem
	}{
		{"NixOS's defaults", nil, ""},
		{"an older NixOS's key files", set(`["%h/.ssh/authorized_keys", "/etc/ssh/authorized_keys.d/%u"]`, `[".ssh/authorized_keys", ".ssh/authorized_keys2", "/etc/ssh/authorized_keys.d/%u"]`), ""},
		{"another port, but 22 on an address", func(j string) string {
			return set(`"ports": [22], "listenAddresses": []`, `"ports": [2222], "listenAddresses": [{"addr": "0.0.0.0", "port": 22}]`)(j)
		}, ""},
		{"root allowed from some hosts", set(`"AllowUsers": null`, `"AllowUsers": ["root@10.*", "alice"]`), ""},
		{"root denied from some hosts only", set(`"DenyUsers": null`, `"DenyUsers": ["root@192.0.2.1"]`), ""},
		{"a Match block is not judged", extra(`Match User root\n  PermitRootLogin no\n`), ""},
		{"PermitRootLogin yes", set(`"PermitRootLogin": "prohibit-password"`, `"PermitRootLogin": "yes"`), ""},
		{"not NixOS's module set", func(string) string { return `{"declared": false}` }, ""},
		{"root's groups when users.users declares none", set(`"root": ["root"], `, ``), ""},

		{"sshd not enabled", set(`"enable": true`, `"enable": false`), "services.openssh.enable is false"},
		{"PermitRootLogin no", set(`"PermitRootLogin": "prohibit-password"`, `"PermitRootLogin": "no"`), `PermitRootLogin is "no"`},
		{"PermitRootLogin forced-commands-only", set(`"PermitRootLogin": "prohibit-password"`, `"PermitRootLogin": "forced-commands-only"`), `PermitRootLogin is "forced-commands-only"`},
		{"PermitRootLogin null, then extraConfig's", func(j string) string {
			return extra(`PermitRootLogin no\n`)(set(`"PermitRootLogin": "prohibit-password"`, `"PermitRootLogin": null`)(j))
		}, `PermitRootLogin is "no"`},
		{"authorizedKeysInHomedir = false", set(`["%h/.ssh/authorized_keys", "/etc/ssh/authorized_keys.d/%u"]`, `["/etc/ssh/authorized_keys.d/%u"]`), "no longer reads ~root/.ssh/authorized_keys"},
		{"AuthorizedKeysFile in the settings comes first", set(`"AuthorizedKeysFile": null`, `"AuthorizedKeysFile": "/etc/ssh/authorized_keys.d/%u"`), "no longer reads ~root/.ssh/authorized_keys"},
		{"another port", set(`"ports": [22]`, `"ports": [2222]`), "not on 22"},
		{"PubkeyAuthentication off", set(`"PubkeyAuthentication": null`, `"PubkeyAuthentication": false`), "PubkeyAuthentication is no"},
		{"AllowUsers without root", set(`"AllowUsers": null`, `"AllowUsers": ["alice", "ro?t2"]`), "AllowUsers [alice ro?t2] does not allow root"},
		{"AllowUsers in extraConfig", extra(`AllowUsers alice\n`), "AllowUsers [alice] does not allow root"},
		{"DenyUsers root", set(`"DenyUsers": null`, `"DenyUsers": ["r*"]`), "DenyUsers [r*] denies root"},
		{"AllowGroups without root's", set(`"AllowGroups": null`, `"AllowGroups": ["wheel"]`), "AllowGroups [wheel] allows none of root's groups [root]"},
		{"DenyGroups root", set(`"DenyGroups": null`, `"DenyGroups": ["root"]`), "DenyGroups [root] denies"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := SSHAccess(sshFacts(t, c.edit), "root", 22)
			if c.want == "" {
				assert.Empty(t, got)
				return
			}
			require.Len(t, got, 1, "%v", got)
			assert.Equal(t, SSHLockout, got[0].ID)
			assert.Contains(t, got[0].String(), c.want)
		})
	}
}

// The run's user is CCCI_SSH_USER: PermitRootLogin concerns root alone, and
// the lists and groups are judged for that user.
func TestSSHAccessForAnotherUser(t *testing.T) {
	alice := func(edit func(string) string) []Problem { return SSHAccess(sshFacts(t, edit), "alice", 22) }
	assert.Empty(t, alice(func(j string) string {
		return strings.Replace(j, `"PermitRootLogin": "prohibit-password"`, `"PermitRootLogin": "no"`, 1)
	}))
	assert.Empty(t, alice(func(j string) string { return strings.Replace(j, `"AllowGroups": null`, `"AllowGroups": ["wheel"]`, 1) }))
	got := alice(func(j string) string { return strings.Replace(j, `"AllowUsers": null`, `"AllowUsers": ["root"]`, 1) })
	require.Len(t, got, 1)
	assert.Contains(t, got[0].String(), "AllowUsers [root] does not allow alice")
	got = alice(func(j string) string { return strings.Replace(j, `"DenyGroups": null`, `"DenyGroups": ["users"]`, 1) })
	require.Len(t, got, 1)
	assert.Contains(t, got[0].String(), "DenyGroups [users] denies one of alice's groups [users wheel]")
}
