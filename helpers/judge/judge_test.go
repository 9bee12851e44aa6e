package judge

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/cc-ci/acceptance/helpers/egress"
	"github.com/cc-ci/acceptance/helpers/fetchlog"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/repoint"
	"github.com/cc-ci/acceptance/helpers/target"
	"github.com/cc-ci/acceptance/helpers/undeclared"
)

func ids(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

// Each rule, on recorded facts: what a correct target holds gives no
// problem; each way it can be wrong gives that rule's identifier, and the
// problem names it.
func TestEachRuleOnRecordedFacts(t *testing.T) {
	const good = "# D8\n\n## Static\n\nThe rebuilt closure is byte-identical.\n\n## Live\n\n### Live rebuild, run r20261207t030000-abcdef\n"
	input := target.SecretsLink{Kind: "flake input", Name: "secrets", Where: "flake.lock", URL: "git+https://git.example/s.git", Rev: "aaaa", NarHash: "sha256-x"}
	gitlink := target.SecretsLink{Kind: "git submodule", Name: "secrets", Where: "the base's tree (a gitlink)", URL: "https://git.example/s.git", Rev: "aaaa"}
	install := "Point DNS at the gateway, then run the steps."
	gitHTTP := egress.Dest{IP: "10.99.0.1", Port: 8418}
	doc := func(prose string) *installdoc.Doc {
		d, err := installdoc.Parse(target.InstallDoc, []byte(prose+"\n\n```sh {step=switch}\nnixos-rebuild switch\n```\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	machine, repos := []string{"10.99.0.5", "fe80::5"}, []string{"good/cc-ci.git", "good/cc-ci-secrets.git"}
	fetch := func(remote, repo string) fetchlog.Entry {
		return fetchlog.Entry{Time: time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC), Remote: remote, Protocol: "http", Repo: repo}
	}
	domain := repoint.Param{Name: "the domain", Value: "ci.example.net"}
	site := repoint.Site{Path: "instance.nix", Line: 3}
	repointed := func(running, rebuiltOld, rebuiltNew []string) *repoint.Facts {
		return &repoint.Facts{
			Changes:   []repoint.Change{{Param: domain, New: "repointed-1.invalid", Site: site}},
			Running:   repoint.Closure{Made: map[string][]string{domain.Value: running}},
			Rebuilt:   repoint.Closure{Made: map[string][]string{domain.Value: rebuiltOld, "repointed-1.invalid": rebuiltNew}},
			Elsewhere: map[string][]string{domain.Value: {"modules/drone.sh", "docs/install.md"}},
		}
	}
	for _, c := range []struct {
		name string
		got  []Problem
		want []string
	}{
		{"a D8 document as the plan asks", D8Document(good, []string{"infeasible by design"}), nil},
		{"no static part", D8Document("## Live\n\nrun r1\n", nil), []string{D8StaticMissing}},
		{"no live part", D8Document("## Static\n\nbyte-identical\n", nil), []string{D8LiveMissing}},
		{"the phrase, broken over a line", D8Document(good+"\nStill infeasible\nby design.\n", []string{"infeasible by design"}), []string{D8ForbiddenPhrase}},
		{"pinned as a flake input, with its content", Pins([]target.SecretsLink{input}, "u", "aaaa"), nil},
		{"pinned as a submodule", Pins([]target.SecretsLink{gitlink}, "u", "aaaa"), nil},
		{"not pinned", Pins(nil, "u", "aaaa"), []string{SecretsUnpinned}},
		{"a stale pin", Pins([]target.SecretsLink{input}, "u", "bbbb"), []string{SecretsPinStale}},
		{"a flake input without its narHash", Pins([]target.SecretsLink{{Kind: "flake input", Where: "flake.lock", Rev: "aaaa"}}, "u", "aaaa"), []string{SecretsPinNoNarHash}},
		{"the linkage recorded", Linkage([]string{"flake input"}, []target.SecretsLink{input}), nil},
		{"no linkage recorded", Linkage(nil, []target.SecretsLink{input}), []string{LinkageUnrecorded}},
		{"another linkage recorded", Linkage([]string{"git submodule"}, []target.SecretsLink{input}), []string{LinkageContradicted}},
		{"the sizing recorded", Sizing([]int64{4 << 30}, "cc-nix-test"), nil},
		{"no sizing recorded", Sizing(nil, "cc-nix-test"), []string{SizingUnrecorded}},
		{"the docs as the plan asks", Docs([]string{target.InstallDoc, "docs/secrets.md"}, map[string]string{target.InstallDoc: install, "docs/secrets.md": "sops"}, []string{"operator drops"}), nil},
		{"a doc missing", Docs([]string{target.InstallDoc, "docs/secrets.md"}, map[string]string{target.InstallDoc: install}, nil), []string{DocsMissing}},
		{"a stale doc", Docs([]string{"docs/secrets.md"}, map[string]string{"docs/secrets.md": "The operator\ndrops the cert."}, []string{"operator drops"}), []string{DocsStaleCertificate}},
		{"a secrets repo of sops files only", SecretsRepoTree(nil), nil},
		{"code in the secrets repo", SecretsRepoTree([]target.TreeProblem{{Commit: "0123456789abcdef", Path: "decrypt.sh", Why: "executable file"}}), []string{SecretsTree}},
		{"encrypted as .sops.yaml says, to the bootstrap key", Recipients([]string{"age1a", "age1b"}, []string{"age1a", "age1b"}, "age1a"), nil},
		{"encrypted to another set", Recipients([]string{"age1a", "age1c"}, []string{"age1a", "age1b"}, "age1a"), []string{RecipientsMismatch}},
		{"not to the bootstrap key", Recipients([]string{"age1b"}, []string{"age1b"}, "age1a"), []string{BootstrapNotRecipient}},
		{"every required secret, none in plaintext", RequiredSecrets(map[string]string{"a": "x"}, []string{"a"}, nil), nil},
		{"a required secret missing", RequiredSecrets(map[string]string{"a": "x"}, []string{"a", "b"}, nil), []string{SecretMissing}},
		{"a value in plaintext", RequiredSecrets(nil, nil, []string{"registry_mirror_token"}), []string{SecretsPlaintext}},
		{"secrets long enough", LongEnough(nil, 12), nil},
		{"a secret too short", LongEnough([]string{"registry_username is 4 bytes"}, 12), []string{SecretTooShort}},
		{"no DNS precondition", Docs([]string{target.InstallDoc}, map[string]string{target.InstallDoc: "Use the gateway."}, nil), []string{InstallPrecondition}},
		{"only the repos and the allow-list reached", Egress([]egress.Contact{{Step: "clone-base", Dest: gitHTTP}}, egress.Allowed{gitHTTP: true}), nil},
		{"a host reached during a step", Egress([]egress.Contact{{Step: "switch", Dest: egress.Dest{IP: "10.99.0.1", Port: 8420}}}, egress.Allowed{gitHTTP: true}), []string{EgressUnexpected}},
		{"a frame after the last step", Egress([]egress.Contact{{Step: egress.AfterInstall, Dest: egress.Dest{MAC: "ff:ff:ff:ff:ff:ff", Proto: "ethertype 0x88b5"}}}, nil), []string{EgressUnexpected}},
		{"the two repos fetched", Fetches([]fetchlog.Entry{fetch("10.99.0.5", "good/cc-ci.git"), fetch("10.99.0.5", "good/cc-ci-secrets.git")}, machine, repos), nil},
		{"a third repo fetched by another machine", Fetches([]fetchlog.Entry{fetch("10.99.0.6", "tools/x.git")}, machine, repos), nil},
		{"a third repo on the same server", Fetches([]fetchlog.Entry{fetch("10.99.0.5", "good/cc-ci.git"), fetch("10.99.0.5", "tools/x.git"), fetch("10.99.0.5", "tools/x.git")}, machine, repos), []string{FetchUnexpected}},
		{"git fetched the two repos and a pinned input", GitFetches([]fetchlog.GitFetch{{Step: "clone-base", Repo: "git.example/o/cc-ci"}, {Step: "switch", Repo: "github.com/nixos/nixpkgs"}}, []string{"git.example/o/cc-ci", "github.com/nixos/nixpkgs"}), nil},
		{"git fetched a third repo", GitFetches([]fetchlog.GitFetch{{Step: "switch", Repo: "git.example/o/site-tools", Protocol: "https"}, {Step: "switch", Repo: "git.example/o/site-tools", Protocol: "https"}}, []string{"git.example/o/cc-ci"}), []string{FetchUnexpected}},
		{"the age key alone asked for", OperatorAsks(doc("Copy the age key to the machine."), "/var/lib/sops-nix/key.txt"), nil},
		{"a token asked for in the text", OperatorAsks(doc("Then paste the registry token on the machine."), "/var/lib/sops-nix/key.txt"), []string{OperatorAsksMore}},
		{"a key the machine built", UndeclaredSecrets([]undeclared.Finding{{Repo: "store", Path: "/nix/store/x-etc/key", Line: 2, Rule: "private-key", Fingerprint: "0123456789abcdef0123"}}), []string{SecretUndeclared}},
		{"a parameter set once", ParameterSiting(domain, []repoint.Site{site}), nil},
		{"a parameter set nowhere", ParameterSiting(domain, nil), []string{ParameterSites}},
		{"a parameter set twice", ParameterSiting(domain, []repoint.Site{site, {Path: "modules/drone.nix", Line: 7}}), []string{ParameterSites}},
		{"repointed everywhere it was", Repointing(repointed([]string{"/nix/store/a-sys/bin/drone"}, nil, []string{"/nix/store/b-sys/bin/drone"})), nil},
		{"the old value stays in a module", Repointing(repointed([]string{"/nix/store/a-sys/bin/drone", "/nix/store/a-sys/bin/dash"}, []string{"/nix/store/b-sys/bin/dash"}, []string{"/nix/store/b-sys/bin/drone"})),
			[]string{ParameterLiteral, ParameterLost}},
		{"a file that held it holds neither", Repointing(repointed([]string{"/nix/store/a-sys/etc/parameters.env"}, nil, nil)), []string{ParameterLost}},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, ids(c.got))
			for _, p := range c.got {
				assert.Contains(t, p.String(), "["+p.Test+", "+p.ID+"]", "the problem names its test and identifier")
				assert.NotEmpty(t, p.File)
			}
		})
	}
}

// recorder is a testing.TB that records Errorf instead of failing.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Errorf(format string, args ...any) { r.errors = append(r.errors, format) }

// A sentence fails on the identifiers it is made of, and only those.
func TestNoneFailsOnlyOnItsIdentifiers(t *testing.T) {
	ps := D8Document("nothing", nil) // no static, no live part
	other := &recorder{TB: t}
	assert.True(t, None(other, ps, D8ForbiddenPhrase), "no forbidden phrase")
	assert.Empty(t, other.errors)
	static := &recorder{TB: t}
	assert.False(t, None(static, ps, D8StaticMissing))
	assert.Len(t, static.errors, 1)
}
