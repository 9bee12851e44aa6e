package judge

import (
	"fmt"
	"strings"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/probe"
)

// The identifiers of what sops-nix installed, judged against what the
// target declares.
const (
	InstalledMissing    = "installed-missing"    // a declared secret or template is not at its path
	InstalledValue      = "installed-value"      // a secret's file does not hold its value in git
	InstalledMode       = "installed-mode"       // a file's mode is not the declared one
	InstalledOwner      = "installed-owner"      // a file's owner:group are not the declared ones
	InstalledUndeclared = "installed-undeclared" // /run/secrets holds what nothing declares
)

// Installed is one declared secret or template as the machine holds it:
// what it is ("secret <name>", "template <name>"), its declared mode and
// owners, the digest of its value in git ("" for a template, whose content
// is the target's own), and the file found at its declared path.
type Installed struct {
	What               string
	Key                string // the key its value is read at (a secret)
	Mode, Owner, Group string // as declared (sops-nix's defaults filled in)
	WantSHA256         string
	File               probe.FileInfo
}

// InstalledFiles judges each declared file as sops-nix installs it: it
// exists at its declared path (through sops-nix's symlinks), holds the
// value git holds (by digest: a secret never goes into a message), with
// the declared mode and owner:group (a name, or uid/gid when the
// declaration leaves them null). test is the C-test judging it.
func InstalledFiles(test string, files []Installed) []Problem {
	var out []Problem
	for _, in := range files {
		f := in.File
		where := fmt.Sprintf("%s (%s)", f.Path, in.What)
		add := func(id, format string, args ...any) {
			out = append(out, Problem{ID: id, Test: test, File: where, Text: fmt.Sprintf(format, args...)})
		}
		if f.SHA256 == "" {
			add(InstalledMissing, "exists: it does not")
			continue
		}
		if in.WantSHA256 != "" && f.SHA256 != in.WantSHA256 {
			add(InstalledValue, "holds the value of %q in git (sha256): it holds another", in.Key)
		}
		want, _ := declared.ParseMode(in.Mode)
		if got, err := declared.ParseMode(f.Mode); err != nil || got != want {
			add(InstalledMode, "mode: declared %s, found %s", in.Mode, f.Mode)
		}
		if !declared.OwnedBy(in.Owner, f.Owner, f.UID) || !declared.OwnedBy(in.Group, f.Group, f.GID) {
			add(InstalledOwner, "owner:group as declared: declared %s:%s, found %s:%s (%s:%s)", in.Owner, in.Group, f.Owner, f.Group, f.UID, f.GID)
		}
	}
	return out
}

// OnlyDeclaredInSecretsDir judges what /run/secrets holds (found: its
// entries, "@" marking a link) against what the host declares there
// (declared.Declarations.InSecretsDir): nothing else.
func OnlyDeclaredInSecretsDir(test string, found []string, decl *declared.Declarations) []Problem {
	holds := decl.InSecretsDir()
	var out []Problem
	for _, f := range found {
		if holds[f] == "" {
			out = append(out, Problem{ID: InstalledUndeclared, Test: test, File: "/run/secrets/" + strings.TrimSuffix(f, "@"),
				Text: fmt.Sprintf("is not a secret or template nixosConfigurations.%s declares (declared: %v)", decl.Host, decl.Names())})
		}
	}
	return out
}
