package judge

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/cc-ci/acceptance/helpers/declared"
)

// SSHLockout is C4's: after the switch, the target's sshd will not let the
// run in (its user, with the run's key in ~/.ssh/authorized_keys, on its port).
const SSHLockout = "ssh-lockout"

// SSHAccess judges, from the declarations alone and before the install,
// that the sshd NixOS will run after the switch still lets the run in: as
// user (CCCI_SSH_USER, root by default), whose ~/.ssh/authorized_keys holds
// the run's key (machine.KeyViaFile, or cloud-init's), on port. A configuration without NixOS's
// services.openssh (a miniature) leaves the image's sshd alone: nothing
// to judge. sshd takes a keyword's first value in the file NixOS writes —
// the settings that are not null, then extraConfig — and sshd's own
// default when neither sets it (sshd_config(5)). A Match block is not
// judged (docs/decisions.md).
func SSHAccess(s *declared.SSH, user string, port int) []Problem {
	if s == nil || !s.Declared {
		return nil
	}
	var out []Problem
	lock := func(format string, args ...any) {
		out = append(out, Problem{ID: SSHLockout, Test: "C4", File: "services.openssh", Text: "lets the run back in after the switch: " + fmt.Sprintf(format, args...)})
	}
	if !s.Enable {
		lock("services.openssh.enable is false (the default): the switch stops sshd")
		return out
	}
	if !listensOn(s, port) {
		lock("sshd listens on ports %v, listenAddresses %v: not on %d, where the run connects", s.Ports, s.ListenAddresses, port)
	}
	word := func(name string, setting *string, dflt string) string {
		if setting != nil {
			return *setting
		}
		if v, ok, _ := s.Keyword(name); ok {
			return v
		}
		return dflt
	}
	switch prl := word("PermitRootLogin", s.Settings.PermitRootLogin, "prohibit-password"); strings.ToLower(prl) {
	case "no", "forced-commands-only":
		if user == "root" {
			lock("PermitRootLogin is %q: sshd refuses root's key, and the run logs in as root", prl)
		}
	}
	var pubkey *string
	if b := s.Settings.PubkeyAuthentication; b != nil {
		pubkey = ptr(map[bool]string{true: "yes", false: "no"}[*b])
	}
	if v := word("PubkeyAuthentication", pubkey, "yes"); strings.EqualFold(v, "no") {
		lock("PubkeyAuthentication is no: the run's key is its only way in")
	}
	files := strings.Join(s.KeysFiles, " ")
	if files == "" {
		files = ".ssh/authorized_keys .ssh/authorized_keys2" // sshd's own default
	}
	if v := s.Settings.AuthorizedKeysFile; v != nil {
		files = *v
	}
	if !slices.ContainsFunc(strings.Fields(files), readsHomeKeys(user)) {
		lock("AuthorizedKeysFile is %q: sshd no longer reads ~%s/.ssh/authorized_keys, where the run's key is (services.openssh.authorizedKeysInHomedir = false?)", files, user)
	}
	list := func(name string, setting *[]string) ([]string, bool) {
		if setting != nil {
			return *setting, true
		}
		if v, ok, _ := s.Keyword(name); ok {
			return strings.Fields(v), true
		}
		return nil, false
	}
	groups := s.GroupsOf(user)
	if allow, ok := list("AllowUsers", s.Settings.AllowUsers); ok && !slices.ContainsFunc(allow, userIs(user, true)) {
		lock("AllowUsers %v does not allow %s", allow, user)
	}
	if deny, ok := list("DenyUsers", s.Settings.DenyUsers); ok && slices.ContainsFunc(deny, userIs(user, false)) {
		lock("DenyUsers %v denies %s", deny, user)
	}
	if allow, ok := list("AllowGroups", s.Settings.AllowGroups); ok && !anyMatch(allow, groups) {
		lock("AllowGroups %v allows none of %s's groups %v", allow, user, groups)
	}
	if deny, ok := list("DenyGroups", s.Settings.DenyGroups); ok && anyMatch(deny, groups) {
		lock("DenyGroups %v denies one of %s's groups %v", deny, user, groups)
	}
	return out
}

// listensOn: with no listenAddresses sshd listens on every address, on
// each of ports; with some, on each entry's port, or on each of ports for
// an entry without one (sshd.nix's ListenAddress lines).
func listensOn(s *declared.SSH, port int) bool {
	if len(s.ListenAddresses) == 0 {
		return slices.Contains(s.Ports, port)
	}
	for _, a := range s.ListenAddresses {
		if a.Port != nil && *a.Port == port || a.Port == nil && slices.Contains(s.Ports, port) {
			return true
		}
	}
	return false
}

// readsHomeKeys: an AuthorizedKeysFile entry that is user's
// ~/.ssh/authorized_keys (relative to the home directory, %h-prefixed, or
// root's home spelled out).
func readsHomeKeys(user string) func(string) bool {
	return func(f string) bool {
		return f == ".ssh/authorized_keys" || f == "%h/.ssh/authorized_keys" || user == "root" && f == "/root/.ssh/authorized_keys"
	}
}

// userIs matches an AllowUsers/DenyUsers pattern (USER or USER@HOST, with
// * and ?) against user. A USER@HOST pattern depends on where the run
// connects from: it allows the user (lenient) but denies only when its host
// part is * — a deny for some hosts is not proven to cover the runner's.
func userIs(user string, allow bool) func(string) bool {
	return func(p string) bool {
		u, host, hasHost := strings.Cut(p, "@")
		if hasHost && !allow && host != "*" {
			return false
		}
		return globMatch(u, user)
	}
}

func anyMatch(patterns, names []string) bool {
	for _, p := range patterns {
		for _, n := range names {
			if globMatch(p, n) {
				return true
			}
		}
	}
	return false
}

// globMatch is sshd's match_pattern for names: * and ? (no slashes in a
// user or group name, so path.Match's rules are sshd's).
func globMatch(pattern, name string) bool {
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}

func ptr[T any](v T) *T { return &v }
