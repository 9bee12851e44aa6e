package declared

import (
	"encoding/json"
	"fmt"
	"strings"
)

// SSH is how the configuration's sshd will let a client in after the
// switch, as NixOS's own module writes sshd_config (nixpkgs
// nixos/modules/services/networking/ssh/sshd.nix): services.openssh with
// its defaults as the module declares them.
type SSH struct {
	Enable          bool                `json:"enable"`          // default false: the switch stops sshd
	Ports           []int               `json:"ports"`           // default [ 22 ]
	ListenAddresses []ListenAddr        `json:"listenAddresses"` // default []: every address, on each of Ports
	KeysFiles       []string            `json:"authorizedKeysFiles"`
	Settings        SSHSettings         `json:"settings"`
	ExtraConfig     string              `json:"extraConfig"`
	Groups          map[string][]string `json:"groups"`   // users.users.<name>: its group and extraGroups
	Declared        bool                `json:"declared"` // false: the configuration has no services.openssh (not NixOS's module set)
}

// ListenAddr is one services.openssh.listenAddresses entry.
type ListenAddr struct {
	Addr string `json:"addr"`
	Port *int   `json:"port"`
}

// SSHSettings are the services.openssh.settings sshd reads for a login;
// a nil value is an option left null, which the module leaves out of
// sshd_config (filterAttrs v != null), so what extraConfig or sshd's own
// default says applies.
type SSHSettings struct {
	PermitRootLogin      *string   `json:"PermitRootLogin"` // default "prohibit-password"
	PubkeyAuthentication *bool     `json:"PubkeyAuthentication"`
	AuthorizedKeysFile   *string   `json:"AuthorizedKeysFile"` // freeform; a list is joined with spaces
	AllowUsers           *[]string `json:"AllowUsers"`
	DenyUsers            *[]string `json:"DenyUsers"`
	AllowGroups          *[]string `json:"AllowGroups"`
	DenyGroups           *[]string `json:"DenyGroups"`
}

// SSHApply is the projection of nixosConfigurations.<host>.config that SSH
// reads. Each fallback is the module's default (sshd.nix): enable false,
// ports [ 22 ], listenAddresses [ ], settings.PermitRootLogin
// "prohibit-password", AllowUsers/DenyUsers/AllowGroups/DenyGroups null.
// authorizedKeysFiles is the merged option: the module adds
// "%h/.ssh/authorized_keys" when authorizedKeysInHomedir (default true) and
// "/etc/ssh/authorized_keys.d/%u" (older NixOS: ".ssh/authorized_keys",
// ".ssh/authorized_keys2" and the same). A configuration with no
// services.openssh at all is not NixOS's module set: declared = false.
const SSHApply = `c: let
  o = (c.services or {}).openssh or null;
  s = if o == null then {} else o.settings or {};
  opt = n: s.${n} or null;
  list = v: if v == null then null else if builtins.isList v then v else [ v ];
  users = (c.users or {}).users or {};
in if o == null then { declared = false; } else {
  declared = true;
  enable = o.enable or false;
  ports = o.ports or [ 22 ];
  listenAddresses = map (a: { addr = a.addr or null; port = a.port or null; }) (o.listenAddresses or [ ]);
  authorizedKeysFiles = o.authorizedKeysFiles or [ ];
  extraConfig = o.extraConfig or "";
  settings = {
    PermitRootLogin = s.PermitRootLogin or "prohibit-password";
    PubkeyAuthentication = opt "PubkeyAuthentication";
    AuthorizedKeysFile = let v = opt "AuthorizedKeysFile"; in if v == null then null else builtins.concatStringsSep " " (list v);
    AllowUsers = list (opt "AllowUsers"); DenyUsers = list (opt "DenyUsers");
    AllowGroups = list (opt "AllowGroups"); DenyGroups = list (opt "DenyGroups");
  };
  groups = builtins.mapAttrs (n: u: builtins.filter (g: g != "") ([ (u.group or "") ] ++ (u.extraGroups or [ ]))) users;
}`

// GroupsOf are user's groups as the configuration declares them; root's
// are at least "root" (users-groups.nix declares root's group so).
func (s *SSH) GroupsOf(user string) []string {
	g := s.Groups[user]
	if user == "root" && len(g) == 0 {
		return []string{"root"}
	}
	return g
}

// ParseSSH reads SSHApply's JSON.
func ParseSSH(b []byte) (*SSH, error) {
	var s SSH
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("services.openssh: %w", err)
	}
	for _, p := range s.Ports {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("services.openssh.ports: %d is not a port", p)
		}
	}
	return &s, nil
}

// Keyword is the first value of an sshd_config keyword in extraConfig (the
// module's own lines, then the configuration's), which NixOS writes after
// the settings (sshd.nix: cat configFile - <<EOL extraConfig): sshd takes a
// keyword's first value, so a setting that is not null comes first. A
// Match block's lines apply only to the connections it matches, so the
// reading stops at the first Match (matched says so).
func (s *SSH) Keyword(name string) (value string, set, matched bool) {
	for _, line := range strings.Split(s.ExtraConfig, "\n") {
		fields := strings.Fields(strings.ReplaceAll(line, "=", " "))
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if strings.EqualFold(fields[0], "Match") {
			return "", false, true
		}
		if strings.EqualFold(fields[0], name) {
			return strings.Join(fields[1:], " "), true, false
		}
	}
	return "", false, false
}
