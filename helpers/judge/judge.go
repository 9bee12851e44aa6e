// Package judge holds the plan's repo-level rules as functions of what the
// target's repos hold — facts already read — each returning problems with a
// stable identifier: a C-test asserts that its sentence's identifiers have
// no problem, `ccci lint-target` prints every problem, and a table test
// judges recorded facts. One implementation per rule, as goss separates a
// resource's assertion from the probe that reads the system.
package judge

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/egress"
	"github.com/cc-ci/acceptance/helpers/fetchlog"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/repoint"
	"github.com/cc-ci/acceptance/helpers/target"
	"github.com/cc-ci/acceptance/helpers/undeclared"
)

// Problem is one broken rule: its stable identifier, the C-test it fails,
// where (a file of the base, or "secrets repo <file>") and what is wrong.
type Problem struct {
	ID   string
	Test string
	File string
	Text string
}

// String is how a problem is printed: where, what (the expectation, then
// what was found), and the C-test and identifier in brackets, so a reader
// (or a defect row) can name it without its wording.
func (p Problem) String() string { return fmt.Sprintf("%s %s [%s, %s]", p.File, p.Text, p.Test, p.ID) }

// List is problems on one line, each as String prints it.
func List(ps []Problem) string {
	texts := make([]string, len(ps))
	for i, p := range ps {
		texts[i] = p.String()
	}
	return strings.Join(texts, "; ")
}

// The identifiers.
const (
	D8StaticMissing      = "d8-static-missing"       // C5: no static part stating the byte-identical closure
	D8LiveMissing        = "d8-live-missing"         // C5: no live part
	D8ForbiddenPhrase    = "d8-forbidden-phrase"     // C5: says "infeasible by design" (or another forbidden phrase)
	SecretsUnpinned      = "secrets-unpinned"        // C1: the base pins the secrets repo neither way
	SecretsPinStale      = "secrets-pin-stale"       // C1: a pin is not the secrets repo's current commit
	SecretsPinNoNarHash  = "secrets-pin-no-narhash"  // C1: a flake input pinned without its content hash
	LinkageUnrecorded    = "linkage-unrecorded"      // C1: DECISIONS.md records no linkage
	LinkageContradicted  = "linkage-contradicted"    // C1: DECISIONS.md records another linkage than the base uses
	SizingUnrecorded     = "sizing-unrecorded"       // C6: DECISIONS.md records no final sizing of the reference
	DocsStaleCertificate = "docs-stale-certificate"  // C7: a doc still describes the operator-dropped certificate
	DocsMissing          = "docs-missing"            // C7: a doc the plan names is not in the base
	InstallPrecondition  = "install-no-precondition" // C7: install.md does not state the DNS or gateway precondition

	SecretsTree      = "secrets-tree"       // C1: a file of the secrets repo that is not an encrypted secret
	SecretsPlaintext = "secrets-plaintext"  // C3: a value of the secrets file is not encrypted
	SecretMissing    = "secret-missing"     // C3: a required secret is not in the secrets file
	SecretTooShort   = "secret-too-short"   // C3: a secret too short to be proven absent
	EgressUnexpected = "egress-unexpected"  // C3: the machine sent to neither repo nor the allow-list
	FetchUnexpected  = "fetch-unexpected"   // C3: the machine asked the git server for a third repository
	OperatorAsksMore = "operator-asks-more" // C3: the document asks the operator for something besides the age key
	SecretUndeclared = "secret-undeclared"  // C3: secret-shaped material in a repo that sops does not hold
	ParameterSites   = "parameter-sites"    // C1: a parameter is set in no file of the base Nix reads, or in several
	ParameterLiteral = "parameter-literal"  // C1: repointed at its one site, the rebuilt system still holds the old value
	ParameterLost    = "parameter-lost"     // C1: repointed, a file that held the old value does not hold the new one

	// Rules ccci lint-target still applies in its own code (to move here
	// next); their identifiers are these.
	InstallDocument       = "install-doc"             // C3/C4/C7: install.md does not parse, or not as the plan's model
	SecretsFile           = "secrets-file"            // C3: the secrets file does not read or decrypt
	RecipientsMismatch    = "recipients-mismatch"     // C1: the file is not encrypted to the recipients .sops.yaml names
	BootstrapNotRecipient = "bootstrap-not-recipient" // C1: the bootstrap key cannot decrypt the secrets file
	CertificateInGit      = "certificate"             // C2: the certificate and key in git are not usable for the domain
	PlaintextInGit        = "plaintext-in-git"        // C3: a secret in plaintext in a git object
	Unreadable            = "unreadable"              // a file the rule reads cannot be read
)

// D8Document judges the D8 evidence document (target.D8Doc): a static part
// stating the byte-identical closure, a live part, none of the forbidden
// phrases (as a reader of the rendered page reads them). Whether the live
// part's citations hold needs the evidence chain and the host: C5 judges
// them.
func D8Document(doc string, forbidden []string) []Problem {
	var out []Problem
	add := func(id, format string, args ...any) {
		out = append(out, Problem{ID: id, Test: "C5", File: target.D8Doc, Text: fmt.Sprintf(format, args...)})
	}
	static, live := target.D8Parts(doc)
	if !target.ContainsPhrase(static, "byte-identical") {
		add(D8StaticMissing, `has a static part (a "## Static" section) that states the byte-identical closure: it has none`)
	}
	if live == "" {
		add(D8LiveMissing, `has a live part (a "## Live" section): it has none`)
	}
	for _, phrase := range forbidden {
		if target.ContainsPhrase(doc, phrase) {
			add(D8ForbiddenPhrase, "must not say %q: it does", phrase)
		}
	}
	return out
}

// Pins judges how the base pins the secrets repo: at least one way (a flake
// input or a git submodule), each at the secrets repo's current commit, a
// flake input with its content hash.
func Pins(links []target.SecretsLink, secretsURL, secretsCommit string) []Problem {
	if len(links) == 0 {
		return []Problem{{ID: SecretsUnpinned, Test: "C1", File: "the base", Text: fmt.Sprintf(
			"pins %s: as a flake input in flake.lock (named secrets, or by its URL) or as a git submodule: it does neither", secretsURL)}}
	}
	var out []Problem
	for _, l := range links {
		if l.Rev != secretsCommit {
			out = append(out, Problem{ID: SecretsPinStale, Test: "C1", File: l.Where, Text: fmt.Sprintf(
				"pins the secrets repo's current commit: %s, but the secrets repo is at %.12s", l, secretsCommit)})
		}
		if l.Kind == "flake input" && !strings.HasPrefix(l.NarHash, "sha256-") {
			out = append(out, Problem{ID: SecretsPinNoNarHash, Test: "C1", File: l.Where, Text: fmt.Sprintf(
				"pins the content of %s with its narHash: it has %q", l, l.NarHash)})
		}
	}
	return out
}

// Linkage judges that DECISIONS.md records how the base consumes the
// secrets repo, and that it is the way the base pins it.
func Linkage(recorded []string, links []target.SecretsLink) []Problem {
	if len(recorded) == 0 {
		return []Problem{{ID: LinkageUnrecorded, Test: "C1", File: target.DecisionsDoc,
			Text: "records how the base consumes the secrets repo, flake input or git submodule (the plan, §2 and §7): it records neither"}}
	}
	var out []Problem
	for _, l := range links {
		if !slices.Contains(recorded, l.Kind) {
			out = append(out, Problem{ID: LinkageContradicted, Test: "C1", File: target.DecisionsDoc, Text: fmt.Sprintf(
				"records the linkage as %v, but the base pins the secrets repo as a %s", recorded, l)})
		}
	}
	return out
}

// Sizing judges that DECISIONS.md records the final sizing of the reference
// instance (its name): the sizes it records (the plan's C6). Whether the
// reference runs at one of them needs Incus: C6 judges it.
func Sizing(sizes []int64, reference string) []Problem {
	if len(sizes) > 0 {
		return nil
	}
	return []Problem{{ID: SizingUnrecorded, Test: "C6", File: target.DecisionsDoc, Text: fmt.Sprintf(
		"records the final %s sizing (the plan's C6): a section naming %s states its size: none does", reference, reference)}}
}

// Docs judges the documents the plan names (want) as the base holds them
// (path → text; a path it does not hold is absent): none still describes
// the operator-dropped certificate (stale phrases, as a reader reads them),
// and install.md states the DNS and gateway preconditions.
func Docs(want []string, docs map[string]string, stale []string) []Problem {
	var out []Problem
	for _, path := range want {
		text, ok := docs[path]
		if !ok {
			out = append(out, Problem{ID: DocsMissing, Test: "C7", File: path, Text: "is in the base: it is not"})
			continue
		}
		for _, phrase := range stale {
			if target.ContainsPhrase(text, phrase) {
				out = append(out, Problem{ID: DocsStaleCertificate, Test: "C7", File: path, Text: fmt.Sprintf("still describes the operator-dropped certificate (%q)", phrase)})
			}
		}
		if path != target.InstallDoc {
			continue
		}
		for _, pre := range []string{"DNS", "gateway"} {
			if !strings.Contains(strings.ToLower(text), strings.ToLower(pre)) {
				out = append(out, Problem{ID: InstallPrecondition, Test: "C7", File: path, Text: fmt.Sprintf("states the %s precondition: it does not", pre)})
			}
		}
	}
	return out
}

// PlanDocs are the documents the plan names for C7.
var PlanDocs = []string{target.InstallDoc, "docs/secrets.md", "architecture.md"}

// SecretsRepoTree judges the secrets repo's trees (target.SecretsTreeProblems,
// every commit): nothing but .sops.yaml, a README and encrypted sops files.
func SecretsRepoTree(found []target.TreeProblem) []Problem {
	var out []Problem
	for _, p := range found {
		out = append(out, Problem{ID: SecretsTree, Test: "C1", File: "the secrets repo", Text: fmt.Sprintf(
			"holds only sops files, in every commit: %s: %s, in commit %.12s", p.Path, p.Why, p.Commit)})
	}
	return out
}

// Recipients judges whom the secrets file is encrypted to: the recipients
// .sops.yaml names, the bootstrap key among them.
func Recipients(fromRules, inFile []string, bootstrap string) []Problem {
	var out []Problem
	if !slices.Equal(fromRules, inFile) {
		out = append(out, Problem{ID: RecipientsMismatch, Test: "C1", File: "secrets repo " + target.SecretsDoc, Text: fmt.Sprintf(
			"is encrypted to the recipients .sops.yaml names (%v): it is encrypted to %v", fromRules, inFile)})
	}
	if !slices.Contains(inFile, bootstrap) {
		out = append(out, Problem{ID: BootstrapNotRecipient, Test: "C1", File: "secrets repo " + target.SecretsDoc, Text: fmt.Sprintf(
			"is encrypted to the bootstrap key (%s): it is not", bootstrap)})
	}
	return out
}

// RequiredSecrets judges that every required secret is in the secrets file
// (decrypted with the bootstrap key: secrets) and that none of its values
// is plaintext (sopsfile.Info.Plaintext: the paths).
func RequiredSecrets(secrets map[string]string, required, plaintext []string) []Problem {
	var out []Problem
	for _, name := range required {
		if secrets[name] == "" {
			// A name is a key of target.SecretsDoc, or "<file>:<key>" of
			// another sops file (target.SecretName).
			file, _, ok := strings.Cut(name, ":")
			if !ok {
				file = target.SecretsDoc
			}
			out = append(out, Problem{ID: SecretMissing, Test: "C3", File: "the secrets repo", Text: fmt.Sprintf(
				"secret %s is in %s (decrypted with the bootstrap key): it is not", name, file)})
		}
	}
	if len(plaintext) > 0 {
		out = append(out, Problem{ID: SecretsPlaintext, Test: "C3", File: "secrets repo " + target.SecretsDoc, Text: fmt.Sprintf(
			"has no value in plaintext: values not encrypted: %s", strings.Join(plaintext, ", "))})
	}
	return out
}

// DeclaredSecrets judges that each secret the target declares is in git as
// sops-nix reads it (value: what sops-nix would install — any sops file of
// either repo, any format, a whole file for key "" — or why it cannot).
func DeclaredSecrets(decls []declared.Secret, value func(declared.Secret) (string, error)) []Problem {
	var out []Problem
	for _, s := range decls {
		v, err := value(s)
		if err == nil && v == "" {
			err = fmt.Errorf("its value is empty")
		}
		if err != nil {
			out = append(out, Problem{ID: SecretMissing, Test: "C3", File: "sops.secrets." + s.Name, Text: fmt.Sprintf(
				"secret %s is in %s as declared (key %q, format %s; decrypted with the bootstrap key): %v", s.Name, s.SopsFile, s.Key, s.Format, err)})
		}
	}
	return out
}

// LongEnough judges that every secret is long enough to be proven absent
// (leakscan.TooShort's findings, "NAME is N bytes"): a shorter one matches
// by chance even as a whole token, so the scanner does not search for it.
// (One shorter than the scanner's MinLen is searched as a token.)
func LongEnough(tooShort []string, minLen int) []Problem {
	if len(tooShort) == 0 {
		return nil
	}
	return []Problem{{ID: SecretTooShort, Test: "C3", File: "the secrets", Text: fmt.Sprintf(
		"are each long enough (%d bytes) to be proven absent from the repos and the store: %s", minLen, strings.Join(tooShort, ", "))}}
}

// None fails t with each problem whose identifier is one of ids — what a
// C-test's sentence asserts of the rules it is made of — and says whether
// there was none.
func None(t testing.TB, problems []Problem, ids ...string) bool {
	t.Helper()
	none := true
	for _, p := range problems {
		if slices.Contains(ids, p.ID) {
			t.Errorf("%s", p)
			none = false
		}
	}
	return none
}

// Egress judges what the machine sent, from its start to its teardown: each
// destination must be one of the two repos or on the allow-list.
func Egress(contacts []egress.Contact, allowed egress.Allowed) []Problem {
	var out []Problem
	for _, c := range contacts {
		if allowed[c.Dest] {
			continue
		}
		when := fmt.Sprintf("install step %q", c.Step)
		if strings.HasPrefix(c.Step, "(") {
			when = "the machine " + c.Step
		}
		out = append(out, Problem{ID: EgressUnexpected, Test: "C3", File: "traffic:",
			Text: fmt.Sprintf("%s reached %s, which is neither of the two repos nor on CCCI_EGRESS_ALLOW", when, c.Dest)})
	}
	return out
}

// Fetches judges what the machine asked the git server for (its fetch
// log's entries from the machine's addresses): the two repos and nothing
// else, by repository — a third repo on the same server is a third repo,
// whatever its host and port.
func Fetches(entries []fetchlog.Entry, machine []string, repos []string) []Problem {
	var out []Problem
	seen := map[string]bool{}
	for _, e := range entries {
		if !slices.Contains(machine, e.Remote) || slices.Contains(repos, e.Repo) || seen[e.Protocol+" "+e.Repo] {
			continue
		}
		seen[e.Protocol+" "+e.Repo] = true
		out = append(out, Problem{ID: FetchUnexpected, Test: "C3", File: "fetch log:", Text: fmt.Sprintf(
			"the machine (%s) asked the git server for repository %q over %s at %s: not one of the two repos %v",
			e.Remote, e.Repo, e.Protocol, e.Time.Format(time.RFC3339), repos)})
	}
	return out
}

// GitFetches judges what git recorded fetching during the install, on the
// machine (fetchlog.FromGitTrace): every repository is one of the two, or
// an input the base's flake.lock pins (the switch fetches those: the base
// names each by its content hash). allowed are fetchlog.Identity's.
func GitFetches(fetches []fetchlog.GitFetch, allowed []string) []Problem {
	var out []Problem
	seen := map[string]bool{}
	for _, f := range fetches {
		if slices.Contains(allowed, f.Repo) || seen[f.Step+" "+f.Repo] {
			continue
		}
		seen[f.Step+" "+f.Repo] = true
		out = append(out, Problem{ID: FetchUnexpected, Test: "C3", File: fmt.Sprintf("install step %q", f.Step), Text: fmt.Sprintf(
			"fetched repository %s over %s (git's own record on the machine): not one of the two repos, nor an input the base's flake.lock pins", f.Repo, f.Protocol)})
	}
	return out
}

// OperatorAsks judges what install.md asks of the operator beyond its steps
// (installdoc.OperatorAsks): in its prose and in the blocks it shows, the
// age key and nothing else.
func OperatorAsks(doc *installdoc.Doc, ageKeyPath string) []Problem {
	var out []Problem
	for _, a := range installdoc.OperatorAsks(doc, ageKeyPath) {
		out = append(out, Problem{ID: OperatorAsksMore, Test: "C3", File: target.InstallDoc, Text: strings.TrimPrefix(a, doc.Path+":")})
	}
	return out
}

// UndeclaredSecrets judges what gitleaks' rules found in the repos (helpers/
// undeclared), the declared secrets and what is declared public already
// set aside: every other piece of secret-shaped material is a secret kept
// out of sops.
func UndeclaredSecrets(found []undeclared.Finding) []Problem {
	var out []Problem
	for _, f := range found {
		file := f.Repo + " repo " + f.Path
		if f.Object == "" {
			file = "the machine's store" // f names the file
		}
		out = append(out, Problem{ID: SecretUndeclared, Test: "C3", File: file, Text: fmt.Sprintf(
			"holds no secret sops does not: %s (encrypt it in the secrets repo, or list its fingerprint in CCCI_PUBLIC_MATERIAL if it is public)", f)})
	}
	return out
}

// ParameterSiting judges where an instance parameter is set (repoint.Sites):
// once, so that repointing cc-ci is a one-line edit (plan §2).
func ParameterSiting(p repoint.Param, sites []repoint.Site) []Problem {
	switch len(sites) {
	case 1:
		return nil
	case 0:
		return []Problem{{ID: ParameterSites, Test: "C1", File: "the base", Text: fmt.Sprintf(
			"sets %s (%q) as a quoted value in a file Nix reads (.nix, .json, .toml): it sets it nowhere", p.Name, p.Value)}}
	}
	var where, files []string
	for _, s := range sites {
		where = append(where, s.String())
		if !slices.Contains(files, s.Path) {
			files = append(files, s.Path)
		}
	}
	return []Problem{{ID: ParameterSites, Test: "C1", File: strings.Join(files, ", "), Text: fmt.Sprintf(
		"sets %s (%q) once, for a one-line edit to repoint cc-ci: it is set %d times, at %s", p.Name, p.Value, len(sites), strings.Join(where, ", "))}}
}

// Repointing judges a rebuild with every parameter changed at its site
// (repoint.Observe): the old values are nowhere in what the configuration
// made, and every file of the running system that held an old value holds
// the new one (the same file of the same-named store path).
func Repointing(f *repoint.Facts) []Problem {
	var out []Problem
	for _, c := range f.Changes {
		if stays := f.Rebuilt.Made[c.Value]; len(stays) > 0 {
			file := "the base" // the value's literal copy, wherever the build took it from
			if len(f.Elsewhere[c.Value]) > 0 {
				file = shortList(f.Elsewhere[c.Value])
			}
			out = append(out, Problem{ID: ParameterLiteral, Test: "C1", File: file, Text: fmt.Sprintf(
				"holds %s %q literally: repointed at its site %s to %q, the rebuilt system still holds the old value in %s",
				c.Name, c.Value, c.Site, c.New, shortList(stays))})
		}
		now := map[string]bool{}
		for _, file := range f.Rebuilt.Made[c.New] {
			now[inStore(file)] = true
		}
		var lost []string
		for _, file := range f.Running.Made[c.Value] {
			if k := inStore(file); !now[k] && !slices.Contains(lost, k) {
				lost = append(lost, k)
			}
		}
		if len(lost) > 0 {
			out = append(out, Problem{ID: ParameterLost, Test: "C1", File: c.Site.Path, Text: fmt.Sprintf(
				"repoints %s with its one line (%s, %q → %q): in the rebuilt system %s no longer hold the new value where the running one held the old",
				c.Name, c.Site, c.Value, c.New, shortList(lost))})
		}
	}
	return out
}

// inStore names a file of the store without the store path's hash: the
// same file of a rebuilt path has the same name.
func inStore(file string) string {
	rest, _ := strings.CutPrefix(file, "/nix/store/")
	if _, name, ok := strings.Cut(rest, "-"); ok {
		return name
	}
	return rest
}

// shortList is at most five items, then how many more.
func shortList(items []string) string {
	if len(items) <= 5 {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:5], ", "), len(items)-5)
}
