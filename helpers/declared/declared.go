// Package declared reads what the target declares, as a NixOS host declares
// it: the sops secrets and templates of nixosConfigurations.<host>.config
// (sops-nix's options), evaluated with Nix from the pinned repos on the
// throwaway machine — the target's code runs there, never on the runner.
// The harness expects what the target says, not what the fixtures do.
package declared

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/cc-ci/acceptance/helpers/sopsfile"
)

// Secret is one sops.secrets.<name>: where sops-nix puts the value of key
// from sopsFile, and with which mode and owners (a name, or "uid:N" /
// "gid:N" when the declaration names none: OwnedBy compares either).
type Secret struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Path     string `json:"path"`
	Mode     string `json:"mode"`
	Owner    string `json:"owner"`
	Group    string `json:"group"`
	SopsFile string `json:"sopsFile"` // the file in the secrets repo, relative to its root
	Format   string `json:"format"`   // sops-nix's format: yaml (default), json, binary, dotenv, ini
}

// Template is one sops.templates.<name>: a file sops-nix renders with
// secrets in it.
type Template struct {
	Name  string `json:"name"`
	Path  string `json:"path"`
	Mode  string `json:"mode"`
	Owner string `json:"owner"`
	Group string `json:"group"`
}

// Declarations are a host's sops secrets and templates, sorted by name,
// and the services it starts at boot.
type Declarations struct {
	Host      string
	Secrets   []Secret
	Templates []Template
	// Units are the systemd.services.<name> the configuration enables and
	// has wanted by multi-user.target, as <name>.service: what NixOS starts
	// at every boot, so what must converge after the switch; and, once Own
	// has read where they are defined, those the base's own modules define
	// and anything wants.
	Units  []string
	wanted []string // enabled and wanted by anything (Apply's "wanted")
}

// Apply is the projection evaluated on nixosConfigurations.<host>.config:
// the options the checks read, as JSON. On a NixOS host the module system
// fills every option; the fallbacks are sops-nix's own defaults, for a
// configuration that spells only some (Mic92/sops-nix 56b2406,
// modules/sops/default.nix: name and key = the attribute name, path =
// "/run/secrets/<name>", mode "0400"; templates/default.nix: path under
// /run/secrets/rendered). Owner and group are null by default (nullOr str,
// since a4c33bf, 2024-10): the file then belongs to uid and gid (default
// 0, "uid:0"/"gid:0" here), and an owner's group defaults to
// users.users.<owner>.group.
const Apply = `c: let
  s = c.sops or {};
  str = v: if v == null then "" else toString v;
  set = v: v != null;
  users = (c.users or {}).users or {};
  who = v: let owner = v.owner or null; group = v.group or null; in {
    owner = if set owner then owner else "uid:${toString (v.uid or 0)}";
    group = if set group then group
      else if set owner && set ((users.${owner} or {}).group or null) then users.${owner}.group
      else "gid:${toString (v.gid or 0)}";
  };
in {
  secrets = builtins.mapAttrs (n: v: {
    name = v.name or n; key = v.key or n;
    path = str (v.path or "/run/secrets/${n}"); mode = str (v.mode or "0400");
    sopsFile = str (v.sopsFile or (s.defaultSopsFile or ""));
    format = str (v.format or "yaml");
  } // who v) (s.secrets or {});
  templates = builtins.mapAttrs (n: v: {
    name = v.name or n; path = str (v.path or "/run/secrets/rendered/${n}"); mode = str (v.mode or "0400");
  } // who v) (s.templates or {});
  # nixos/modules/system/boot/systemd.nix: enable defaults to true, and
  # wantedBy = [ "multi-user.target" ] is what links a unit into the boot.
  units = let sv = (c.systemd or {}).services or {}; in builtins.filter
    (n: (sv.${n}.enable or true) && builtins.elem "multi-user.target" (sv.${n}.wantedBy or [ ]))
    (builtins.attrNames sv);
  # Enabled and wanted by anything (a target, docker.service, another
  # reconcile unit): started whenever what wants it is.
  wanted = let sv = (c.systemd or {}).services or {}; in builtins.filter
    (n: (sv.${n}.enable or true) && (sv.${n}.wantedBy or [ ]) != [ ])
    (builtins.attrNames sv);
}`

// Defined is the projection evaluated on nixosConfigurations.<host>: which
// file defines which systemd.services, from the module system's own record
// (lib/modules.nix: an option's definitionsWithLocations are its
// definitions after mkIf and mkMerge are discharged, each with the file of
// the module that made it). A unit defined by a file of the base's own
// source is the target's.
const Defined = `h: map (d: { file = toString d.file; names = builtins.attrNames d.value; })
  ((((h.options or {}).systemd or {}).services or {}).definitionsWithLocations or [ ])`

// Own adds to d.Units the units the base's own modules define (a file under
// source, the base's store path) that are enabled and wanted by anything:
// a reconcile unit wanted by docker.service or by another unit must
// converge as one wanted by multi-user.target must. defined is Defined's
// JSON; wanted is the configuration's wanted units (Apply's "wanted").
func (d *Declarations) Own(defined []byte, source string) error {
	var defs []struct {
		File  string   `json:"file"`
		Names []string `json:"names"`
	}
	if err := json.Unmarshal(defined, &defs); err != nil {
		return fmt.Errorf("declarations of %s: where systemd.services are defined: %w", d.Host, err)
	}
	if !storeRE.MatchString(source + "/") {
		return fmt.Errorf("declarations of %s: the base's source %q is not a store path", d.Host, source)
	}
	for _, def := range defs {
		if !strings.HasPrefix(def.File, source+"/") {
			continue
		}
		for _, n := range def.Names {
			u := n + ".service"
			if slices.Contains(d.wanted, n) && !slices.Contains(d.Units, u) {
				d.Units = append(d.Units, u)
			}
		}
	}
	sort.Strings(d.Units)
	return nil
}

var (
	// A secret's name may nest (drone/rpc_secret): sops-nix makes the
	// directories under /run/secrets.
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9_.@+-]+(/[A-Za-z0-9_.@+-]+)*$`)
	userRE  = regexp.MustCompile(`^([a-z_][a-z0-9_-]{0,31}\$?|[ug]id:[0-9]{1,10})$`) // a name, or a numeric id (uid:0)
	hostRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)
	storeRE = regexp.MustCompile(`^/nix/store/[0-9a-df-np-sv-z]{32}-[^/]+/`)
	unitRE  = regexp.MustCompile(`^[A-Za-z0-9:_.@-]{1,200}$`)
)

// Parse reads the JSON of Apply's result, validating every field before
// the checks believe it: this is the target's output.
func Parse(host string, b []byte) (*Declarations, error) {
	var raw struct {
		Secrets   map[string]Secret   `json:"secrets"`
		Templates map[string]Template `json:"templates"`
		Units     []string            `json:"units"`
		Wanted    []string            `json:"wanted"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("declarations of %s: %w", host, err)
	}
	d := &Declarations{Host: host}
	for attr, s := range raw.Secrets {
		where := fmt.Sprintf("sops.secrets.%q", attr)
		if err := checkFile(where, s.Name, s.Path, s.Mode, s.Owner, s.Group); err != nil {
			return nil, err
		}
		if !slices.Contains(sopsfile.Formats, s.Format) {
			return nil, fmt.Errorf("%s: format %q is none of sops-nix's %v", where, s.Format, sopsfile.Formats)
		}
		rel := storeRE.ReplaceAllString(s.SopsFile, "")
		if rel == s.SopsFile || rel == "" || strings.Contains(rel, "..") {
			return nil, fmt.Errorf("%s: sopsFile %q is not a file of a flake input in the store", where, s.SopsFile)
		}
		s.SopsFile = rel
		d.Secrets = append(d.Secrets, s)
	}
	for attr, tm := range raw.Templates {
		if err := checkFile(fmt.Sprintf("sops.templates.%q", attr), tm.Name, tm.Path, tm.Mode, tm.Owner, tm.Group); err != nil {
			return nil, err
		}
		d.Templates = append(d.Templates, tm)
	}
	for _, u := range raw.Units {
		if !unitRE.MatchString(u) {
			return nil, fmt.Errorf("systemd.services.%q: not a unit name", u)
		}
		d.Units = append(d.Units, u+".service")
	}
	for _, u := range raw.Wanted {
		if !unitRE.MatchString(u) {
			return nil, fmt.Errorf("systemd.services.%q: not a unit name", u)
		}
		d.wanted = append(d.wanted, u)
	}
	sort.Strings(d.Units)
	sort.Slice(d.Secrets, func(i, j int) bool { return d.Secrets[i].Name < d.Secrets[j].Name })
	sort.Slice(d.Templates, func(i, j int) bool { return d.Templates[i].Name < d.Templates[j].Name })
	return d, nil
}

func checkFile(where, name, p, mode, owner, group string) error {
	switch {
	case !nameRE.MatchString(name) || strings.Contains("/"+name+"/", "/../") || strings.Contains("/"+name+"/", "/./"):
		return fmt.Errorf("%s: name %q is not a file name under /run/secrets", where, name)
	case !path.IsAbs(p) || path.Clean(p) != p:
		return fmt.Errorf("%s: path %q is not a clean absolute path", where, p)
	case !userRE.MatchString(owner) || !userRE.MatchString(group):
		return fmt.Errorf("%s: owner %q or group %q is not a user or group name", where, owner, group)
	}
	if _, err := ParseMode(mode); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	return nil
}

// ParseMode reads an octal file mode as sops-nix takes it ("0400", "440").
func ParseMode(mode string) (uint32, error) {
	m, err := strconv.ParseUint(mode, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("mode %q is not an octal file mode", mode)
	}
	return uint32(m), nil
}

// Names are the declared secrets' names, as /run/secrets holds them.
func (d *Declarations) Names() []string {
	out := make([]string, len(d.Secrets))
	for i, s := range d.Secrets {
		out[i] = s.Name
	}
	return out
}

// SecretsDir is where sops-nix links the current generation of secrets
// (sops.defaultSymlinkPath).
const SecretsDir = "/run/secrets"

// InSecretsDir is what /run/secrets holds for these declarations, as
// probe.Tree lists it (a symlink with "@" after its name), each entry with
// the secret's name (a template's is "rendered/<name>"): each secret's
// file under its name and each template's under rendered/ (the generation
// directory sops-install-secrets writes), and a symlink at every declared
// path inside /run/secrets that is not that file — sops-nix links a
// custom path to the file (symlinkSecretsAndTemplates in
// pkgs/sops-install-secrets/main.go, Mic92/sops-nix 56b2406), and a path
// inside /run/secrets lands in the generation directory too.
func (d *Declarations) InSecretsDir() map[string]string {
	out := map[string]string{}
	entry := func(own, path string) {
		out[own] = own
		if rel, ok := strings.CutPrefix(path, SecretsDir+"/"); ok && rel != own {
			out[rel+"@"] = own
		}
	}
	for _, s := range d.Secrets {
		entry(s.Name, s.Path)
	}
	for _, tm := range d.Templates {
		entry("rendered/"+tm.Name, tm.Path)
	}
	return out
}

// OwnedBy says whether a file's owner (user or group: its name and numeric
// id, as stat prints them) is the declared one: a name, or "uid:N"/"gid:N".
func OwnedBy(declared, name, id string) bool {
	if n, ok := strings.CutPrefix(declared, "uid:"); ok {
		return n == id
	}
	if n, ok := strings.CutPrefix(declared, "gid:"); ok {
		return n == id
	}
	return declared == name
}
