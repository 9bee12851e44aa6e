package judge

import (
	"fmt"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/leakscan"
	"github.com/cc-ci/acceptance/helpers/probe"
)

// SecretReadable is the identifier of a decrypted secret a user other than
// root can read, where its declaration does not let them (C3).
const SecretReadable = "secret-readable"

// A Grant is a declared secret's file as the machine holds it: what the
// secret is called among the scanned secrets (target.SecretName), the
// declaration, and the file its path resolves to (probe.Files, RealPath).
type Grant struct {
	Secret string
	Decl   declared.Secret
	File   probe.FileInfo
}

// allows says whether the file is the secret's, owned and moded as
// declared, and shut to others: then its declared owner (and group, where
// the declared mode lets it) may read it — sops-nix's owner option, the
// NixOS pattern of a key owned by its service's user.
func (g Grant) allows(f leakscan.Finding) bool {
	want, err := declared.ParseMode(g.Decl.Mode)
	got, err2 := declared.ParseMode(g.File.Mode)
	return err == nil && err2 == nil && f.Secret == g.Secret && f.Where == g.File.RealPath &&
		got == want && want&0o007 == 0 &&
		declared.OwnedBy(g.Decl.Owner, g.File.Owner, g.File.UID) && declared.OwnedBy(g.Decl.Group, g.File.Group, g.File.GID)
}

// ReadableSecrets judges what the scan of everything a non-root user can
// read found (leakscan.Walk.ReadableByOthers): no decrypted secret, except
// a declared secret's own file, read by whom its declaration names.
func ReadableSecrets(found []leakscan.Finding, grants []Grant) []Problem {
	var out []Problem
	for _, f := range found {
		allowed := false
		for _, g := range grants {
			allowed = allowed || g.allows(f)
		}
		if !allowed {
			out = append(out, Problem{ID: SecretReadable, Test: "C3", File: f.Where, Text: fmt.Sprintf(
				"is read by no user but root (or the owner its declaration names): %s", f)})
		}
	}
	return out
}
