package acceptance

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/fetchlog"
	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/judge"
	"github.com/cc-ci/acceptance/helpers/leakscan"
	"github.com/cc-ci/acceptance/helpers/probe"
	"github.com/cc-ci/acceptance/helpers/sopsfile"
	"github.com/cc-ci/acceptance/helpers/target"
	"github.com/cc-ci/acceptance/helpers/testrun"
	"github.com/cc-ci/acceptance/helpers/undeclared"
)

// C3 — All secrets in git (one exception). Every infra/app secret is
// sops-encrypted in git; the only out-of-band secret is the bootstrap age
// key; no plaintext secret is in the repos or the Nix store.
func TestC3AllSecretsInGitOneException(t *testing.T) {
	view := run.Target(t)
	cfg := run.Config
	ctx := run.Context()

	run.Sentence(t, "every required secret is in git, encrypted", func(t *testing.T) {
		enc, err := target.ReadSecretsFile(view.Repos)
		require.NoError(t, err)
		info, err := sopsfile.Inspect(enc)
		require.NoError(t, err)
		// Required: what CCCI_REQUIRED_SECRETS names, judged first (the
		// declarations may not be readable when the install failed), then
		// what the target declares it consumes (sops.secrets, read on the
		// machine; with no machine, none).
		judge.None(t, judge.RequiredSecrets(view.Secrets, cfg.Expect.RequiredSecrets, info.Plaintext()), judge.SecretMissing, judge.SecretsPlaintext)
		if cfg.Stages.NoMachine {
			return
		}
		judge.None(t, judge.DeclaredSecrets(run.DeclaredInGit(t).Secrets, view.Value), judge.SecretMissing)
	})

	run.Sentence(t, "the age key is the only thing the operator provides", func(t *testing.T) {
		m := installdoc.ReadModel(view.Doc, cfg.Target.AgeKeyPath)
		assert.Equal(t, []string{installdoc.AgeKeyStep}, m.Operator, "operator (out-of-band) steps in %s", view.Doc.Path)
		// … and in what the operator reads besides: the text and the blocks shown.
		judge.None(t, judge.OperatorAsks(view.Doc, cfg.Target.AgeKeyPath), judge.OperatorAsksMore)
	})

	run.Sentence(t, "from its start on, the machine reached nothing but the two repos", func(t *testing.T) {
		mc := run.Machine(t) // what it sent: with no machine (an install refused before it), nothing to judge
		inst := run.InstallRecord(t)
		// Which repositories git fetched, by its own record on the machine:
		// the two, or an input the base's flake.lock pins. Read wherever the
		// harness runs (no forge log or traffic needed); a step that leaves
		// git's environment or fetches without git is for the checks below.
		if inst.Traced {
			allowed := []string{fetchlog.Identity(cfg.Target.BaseRepoURL), fetchlog.Identity(cfg.Target.SecretsRepoURL)}
			pinned, err := target.LockedInputs(view.Repos)
			require.NoError(t, err, "the inputs the base's flake.lock pins")
			for _, u := range pinned {
				allowed = append(allowed, fetchlog.Identity(u))
			}
			var fetched []string
			for _, f := range inst.GitFetches {
				fetched = append(fetched, f.Step+"→"+f.Repo)
			}
			run.Note("git fetches", "what git fetched during the install, by its own record (step→repository): %v", fetched)
			judge.None(t, judge.GitFetches(inst.GitFetches, allowed), judge.FetchUnexpected)
		} else {
			run.Note("git fetches", "git recorded nothing during the install (GIT_TRACE2_EVENT): no git ran, or it cannot trace")
		}
		if cfg.Expect.Egress == "off" && cfg.Expect.FetchLog == "" {
			const unobserved = "neither the machine's traffic (CCCI_EGRESS=off: on the real host the gateway is not the harness's) nor the git server's requests (CCCI_FETCH_LOG) are observed"
			if !inst.Traced {
				t.Skip("git recorded no fetch, and " + unobserved)
			}
			run.Note("egress", "judged by git's own record alone: %s", unobserved)
			return
		}
		if cfg.Expect.Egress == "nft" {
			// Read now; what it sends later is judged again at its teardown.
			contacts, err := run.Egress()
			require.NoError(t, err, "observe what the machine sends (nftables on the host side of its NICs)")
			allowed, err := run.AllowedEgress()
			require.NoError(t, err)
			var seen []string
			for _, c := range contacts {
				seen = append(seen, c.Step+"→"+c.Dest.String())
			}
			run.Note("egress", "what the machine sent (step→destination): %v", seen)
			judge.None(t, judge.Egress(contacts, allowed), judge.EgressUnexpected)
		}
		if cfg.Expect.FetchLog != "" {
			// Which repositories, not only which host: a third repo on the
			// git server of the two is a third repo. From the install's start:
			// the machine had its address then (and no machine before it of
			// a concurrent run still held that address) — or, when no step
			// ran (an install refused before it), from when it first
			// answered there: never the address's earlier holders.
			since := inst.Started
			if since.IsZero() {
				since = mc.Ready
				if since.IsZero() { // a kept machine (SKIP_provision): from its creation
					since = mc.CreatedAt
				}
			}
			entries, err := fetchlog.Read(cfg.Expect.FetchLog, since)
			require.NoError(t, err, "the git server's fetch log (CCCI_FETCH_LOG)")
			addrs := run.MachineAddresses(t)
			var repos []string
			for _, u := range []string{cfg.Target.BaseRepoURL, cfg.Target.SecretsRepoURL} {
				r, err := fetchlog.RepoOf(u)
				require.NoError(t, err)
				repos = append(repos, r)
			}
			run.Note("fetches", "%d requests to the git server since the install started; the machine's addresses %v", len(entries), addrs)
			judge.None(t, judge.Fetches(entries, addrs, repos), judge.FetchUnexpected)
		}
	})

	run.Sentence(t, "with only the age key pushed, the install succeeds", func(t *testing.T) {
		// An operator step besides the age key fails here; any other install failure is C4's.
		inst := run.InstallSucceeded(t)
		require.Len(t, inst.Record.Pushed, 1, "files the harness pushed to the machine out of band: %v", inst.Record.Pushed)
		p := inst.Record.Pushed[0]
		assert.Equal(t, cfg.Target.AgeKeyPath, p.Path, "the documented path of the age key")
		assert.Equal(t, target.SHA256(view.Key.File), p.Fingerprint, "the pushed file is the bootstrap key")
	})

	run.Sentence(t, "the age key is root's alone; no decrypted secret is readable by group or others", func(t *testing.T) {
		m := run.Installed(t)
		key, err := probe.Files(ctx, m.SSH, []string{cfg.Target.AgeKeyPath})
		require.NoError(t, err)
		if f := key[0]; assert.NotEmpty(t, f.SHA256, "%s exists", f.Path) {
			assert.True(t, f.Private(), "%s must be root's and unreadable by group and others: owner %s, mode %s", f.Path, f.Owner, f.Mode)
		}
		// Each declared secret, at its declared path and in /run/secrets:
		// its owner may be the service that reads it (declared), but group
		// and others may read only public material (a certificate chain).
		decl := m.Declared(t)
		tree, err := probe.Tree(ctx, m.SSH, declared.SecretsDir)
		require.NoError(t, err)
		var paths, names []string
		for _, s := range decl.Secrets {
			paths, names = append(paths, s.Path), append(names, s.Name)
		}
		holds := decl.InSecretsDir() // a link sops-nix made is judged as the secret it links to
		for _, f := range tree {
			name := holds[f]
			if name == "" {
				name = f
			}
			paths, names = append(paths, declared.SecretsDir+"/"+strings.TrimSuffix(f, "@")), append(names, name)
		}
		files, err := probe.Files(ctx, m.SSH, paths)
		require.NoError(t, err)
		for i, f := range files {
			if f.SHA256 == "" || target.PublicMaterial(valueOf(view, decl, names[i])) {
				continue // a missing file is another sentence's; public material may be read by anyone
			}
			mode, err := declared.ParseMode(f.Mode)
			assert.True(t, err == nil && mode&0o077 == 0, "%s (secret %s) is readable by group or others: mode %s (only public material may be)", f.Path, names[i], f.Mode)
		}
	})

	run.Sentence(t, "every file in /run/secrets is a declared secret", func(t *testing.T) {
		assertSecretsDecrypted(t, run.Installed(t), view)
	})

	needles := leakscan.Needles(view.AllSecrets(), 0, t.Logf)
	scanner := leakscan.New(needles)

	run.Sentence(t, "every secret is long enough to be proven absent", func(t *testing.T) {
		judge.None(t, judge.LongEnough(leakscan.TooShort(view.AllSecrets(), 0), leakscan.MinTokenLen), judge.SecretTooShort)
	})

	run.Sentence(t, "no plaintext secret in the repos' history", func(t *testing.T) {
		// Every object the server serves: the repos are mirrored, every ref
		// (a pull request's head, a note) and not only branches and tags.
		total, objects := 0, int64(0)
		var took time.Duration
		var refs []string
		for _, repo := range []string{view.Repos.Base, view.Repos.Secrets} {
			found, st, err := scanner.Git(ctx, repo)
			require.NoError(t, err, "scan every object of %s", repo)
			total, objects, took = total+len(found), objects+st.Files, took+st.Duration
			judge.None(t, judge.PlaintextInRepo(repo, found), judge.PlaintextInGit)
			rs, err := target.Refs(ctx, repo, 20)
			require.NoError(t, err, "the refs of %s", repo)
			refs = append(refs, rs...)
		}
		run.Note("leak scan: repos", "%d needles over all %d objects of both repos in %s (canary proven): %d findings",
			len(needles), objects, took.Round(time.Millisecond), total)
		run.Note("leak scan: refs", "%s", strings.Join(refs, " "))
	})

	run.Sentence(t, "no secret in the repos that sops does not hold", func(t *testing.T) {
		// Secret-shaped material nobody declared: the scan above searches
		// only for the secrets sops holds (gitleaks' rules, every object).
		found, err := undeclared.InRepos(ctx, view.Repos.Base, view.Repos.Secrets, view.AllSecrets(), cfg.Expect.PublicMaterial)
		require.NoError(t, err, "search both repos with gitleaks' rules")
		run.Note("public material", "fingerprints declared public (CCCI_PUBLIC_MATERIAL), set aside: %v", cfg.Expect.PublicMaterial)
		judge.None(t, judge.UndeclaredSecrets(found), judge.SecretUndeclared)
	})

	run.Sentence(t, "no secret in what the machine built that sops does not hold", func(t *testing.T) {
		// A secret made at build time (a key a derivation generates) is in
		// neither repo, and the store is world-readable: the same rules over
		// what the machine built itself, not what a cache served.
		m := run.Installed(t)
		top, err := probe.CurrentSystem(ctx, m.SSH)
		require.NoError(t, err)
		found, err := undeclared.InStore(ctx, m.SSH, top, view.AllSecrets(), cfg.Expect.PublicMaterial, cfg.Timeouts.Scan)
		require.NoError(t, err, "search what the machine built with gitleaks' rules")
		judge.None(t, judge.UndeclaredSecrets(found), judge.SecretUndeclared)
	})

	run.Sentence(t, "no plaintext secret in the machine's Nix store", func(t *testing.T) {
		rep := scanMachine(t, cfg.Expect.ScanPaths, leakscan.Walk{}, needles)
		judge.None(t, judge.PlaintextOnTheMachine(rep.Findings), judge.PlaintextOnMachine)
	})

	run.Sentence(t, "no user but root can read a decrypted secret anywhere on the machine", func(t *testing.T) {
		// A copy in a unit's environment file, under /etc or /var, in a log:
		// whatever a non-root user can reach and read, outside the store
		// (scanned whole above); of the pseudo filesystems, what every user
		// reads of every process — its arguments. A certificate chain is
		// public material (docs/decisions.md).
		walk := leakscan.Walk{ReadableByOthers: true, Skip: append([]string{"/proc", "/sys", "/dev"}, cfg.Expect.ScanPaths...),
			MaxBytes: leakscan.DefaultMaxReadable, Processes: true}
		private := leakscan.Needles(target.Private(view.AllSecrets()), 0, nil)
		rep := scanMachine(t, []string{"/", "/dev/shm"}, walk, private)
		// Except where the declaration lets its owner read it (sops-nix's
		// owner option: a key owned by the user of the service that reads it).
		m := run.Installed(t)
		var grants []judge.Grant
		for _, s := range m.Declared(t).Secrets {
			files, err := probe.Files(ctx, m.SSH, []string{declared.SecretsDir + "/" + s.Name, s.Path})
			require.NoError(t, err)
			for _, f := range files {
				grants = append(grants, judge.Grant{Secret: view.NameOf(s), Decl: s, File: f})
			}
		}
		judge.None(t, judge.ReadableSecrets(rep.Findings, grants), judge.SecretReadable)
	})
}

// scanMachine runs the leak scanner over dirs on the run's installed
// machine and notes what it read; every scan must have found its canary.
func scanMachine(t *testing.T, dirs []string, walk leakscan.Walk, needles []leakscan.Needle) *leakscan.Report {
	t.Helper()
	m := run.Installed(t)
	ctx := run.Context()
	bin, how, err := leakscan.Binary(ctx, t.TempDir())
	require.NoError(t, err)
	t.Logf("leak scanner: %s", how)
	rep, err := leakscan.Remote(ctx, m.SSH, bin, dirs, walk, needles, run.Config.Timeouts.Scan)
	require.NoError(t, err, "scan %v on %s", dirs, m.Name)
	var files, bytes int64
	var took time.Duration
	var undecodable []string
	for _, st := range rep.Stats {
		files, bytes, took = files+st.Files, bytes+st.Bytes, took+st.Duration
		undecodable = append(undecodable, st.Undecodable...)
		assert.True(t, st.Canary, "the scan found its canary")
	}
	what := "every file"
	if walk.ReadableByOthers {
		what = "what a non-root user can read"
	}
	run.Note("leak scan: machine "+strings.Join(dirs, " "), "%d needles over %s under %v (%d files, %d bytes) in %s on the machine (canary proven): %d findings; corrupt compressed streams (searched as far as they decode): %v",
		len(needles), what, dirs, files, bytes, took.Round(time.Millisecond), len(rep.Findings), undecodable)
	return rep
}

// valueOf is the decrypted value of the declared secret called name ("" if
// none is: then it is judged as private).
func valueOf(view *testrun.TargetView, decl *declared.Declarations, name string) string {
	for _, s := range decl.Secrets {
		if s.Name == name {
			v, _ := view.Value(s)
			return v
		}
	}
	return ""
}
