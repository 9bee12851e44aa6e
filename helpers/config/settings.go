package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
)

// IncusAccess is how to reach Incus.
type IncusAccess struct {
	Transport  string // "https" (default when a URL is set) or "unix"
	URL        string
	Socket     string
	ClientCert string
	ClientKey  string
	ServerCert string
	Member     string // cluster member, empty when standalone
}

func (p *parser) incusAccess() IncusAccess {
	a := IncusAccess{
		URL:        p.str("CCCI_INCUS_URL", ""),
		Socket:     p.str("CCCI_INCUS_SOCKET", "/var/lib/incus/unix.socket"),
		ClientCert: p.str("CCCI_INCUS_CLIENT_CERT", ""),
		ClientKey:  p.str("CCCI_INCUS_CLIENT_KEY", ""),
		ServerCert: p.str("CCCI_INCUS_SERVER_CERT", ""),
		Member:     p.str("CCCI_INCUS_TARGET", ""),
	}
	def := "unix"
	if a.URL != "" {
		def = "https"
	}
	a.Transport = p.oneOf("CCCI_TRANSPORT", def, "https", "unix")
	return a
}

// validate: the files the transport needs exist.
func (a IncusAccess) validate(p *parser) {
	need := func(key, val string) {
		if val == "" {
			p.failKey(key, "", "required when CCCI_TRANSPORT="+a.Transport)
			return
		}
		if _, err := os.Stat(val); err != nil {
			p.failKey(key, val, "cannot read: "+errors.Unwrap(err).Error())
		}
	}
	switch a.Transport {
	case "https":
		if !strings.HasPrefix(a.URL, "https://") {
			p.failKey("CCCI_INCUS_URL", a.URL, "must be https://host:port when CCCI_TRANSPORT=https")
		}
		need("CCCI_INCUS_CLIENT_CERT", a.ClientCert)
		need("CCCI_INCUS_CLIENT_KEY", a.ClientKey)
		need("CCCI_INCUS_SERVER_CERT", a.ServerCert)
	case "unix":
		need("CCCI_INCUS_SOCKET", a.Socket)
	}
}

// MachineSettings is what to create, where, and how to reach it.
type MachineSettings struct {
	Project      string
	Image        string
	InstanceType string // container | virtual-machine
	Memory       int64  // bytes, limits.memory of the throwaway machine
	SSHUser      string
	SSHPort      int // where the machine's sshd listens, now and after the switch
	// How the run's SSH key reaches the machine: "file" (the Incus file API,
	// once the agent answers — needs nothing of the image but sshd and the
	// agent), "template" (user.ssh_authorized_keys, if the image's templates
	// honour it) or "cloud-init" (cloud-init.user-data, if it runs cloud-init).
	SSHKeyVia string
	// SecureBoot is a VM's security.secureboot: "false" (NixOS images are
	// unsigned), "true"; "profile" or "" leaves it to the profile. Ignored
	// for containers.
	SecureBoot string
	StateFile  string // run state written with SKIP_teardown, read with SKIP_provision
}

func (p *parser) machine() MachineSettings {
	return MachineSettings{
		Project:      p.str("CCCI_PROJECT", "terraform-ci"),
		Image:        p.str("CCCI_IMAGE", "ccci-blank"),
		InstanceType: p.oneOf("CCCI_INSTANCE_TYPE", "container", "container", "virtual-machine"),
		Memory:       p.size("CCCI_MEMORY", "4GiB"),
		SSHUser:      p.str("CCCI_SSH_USER", "root"),
		SSHPort:      p.port("CCCI_SSH_PORT", "22"),
		SSHKeyVia:    p.oneOf("CCCI_SSH_KEY_VIA", "file", "file", "template", "cloud-init"),
		SecureBoot:   p.oneOf("CCCI_VM_SECUREBOOT", "false", "false", "true", "profile"),
		StateFile:    p.str("CCCI_STATE_FILE", ".run-state.json"),
	}
}

func (m MachineSettings) validate(p *parser) {
	if m.SSHKeyVia == "file" && m.SSHUser != "root" {
		p.failKey("CCCI_SSH_KEY_VIA", m.SSHKeyVia, "writes /root/.ssh/authorized_keys, so CCCI_SSH_USER must be root (use template or cloud-init for "+m.SSHUser+")")
	}
}

// Guardrails are the limits no run may cross.
type Guardrails struct {
	AllowedProjects       []string
	RAMCap                int64 // bytes, sum over running instances incl. the new one
	DefaultInstanceMemory int64 // bytes counted for a running instance with no limits.memory
	MaxMachines           int
	// OtherTenantsRAM is what the operator states the instances a restricted
	// certificate cannot see hold (bytes), counted when OtherTenantsStated;
	// unstated (the zero value), a partial sum refuses.
	OtherTenantsRAM    int64
	OtherTenantsStated bool
	TTL                time.Duration // expires-at label = creation + TTL; the reaper acts after it
	LabelPrefix        string        // user.<prefix>.run-id etc.
}

func (p *parser) guardrails() Guardrails {
	g := Guardrails{
		AllowedProjects:       p.list("CCCI_ALLOWED_PROJECTS", "terraform-ci"),
		RAMCap:                p.size("CCCI_RAM_CAP", "12GiB"),
		DefaultInstanceMemory: p.size("CCCI_DEFAULT_INSTANCE_MEMORY", "1GiB"),
		MaxMachines:           p.positiveInt("CCCI_MAX_MACHINES", "1"),
		TTL:                   p.duration("CCCI_TTL", "2h"),
		LabelPrefix:           p.str("CCCI_LABEL_PREFIX", "ccci"),
	}
	if ram := p.optionalSize("CCCI_OTHER_TENANTS_RAM"); ram >= 0 {
		g.OtherTenantsRAM, g.OtherTenantsStated = ram, true
	}
	return g
}

func (g Guardrails) validate(p *parser) {
	if !validLabelPrefix(g.LabelPrefix) {
		p.failKey("CCCI_LABEL_PREFIX", g.LabelPrefix, "use lower-case letters, digits and '-' only")
	}
}

// Timeouts are every bound on waiting, in one place. Teardown runs within
// TeardownReserve: the run keeps that much of go test's -timeout for it, and
// destroying the machines is given exactly that long.
type Timeouts struct {
	CreateTimeout   time.Duration // the create and start calls, before BootTimeout's stages
	BootTimeout     time.Duration // create → SSH ready (address, agent, host key, key push, SSH)
	StepTimeout     time.Duration // per install.md block; also cloning the target
	ConvergeTimeout time.Duration // units after the switch (systemd's state decides sooner when it can)
	Settle          time.Duration // how long converged units must stay converged before C4 goes on
	Hold            time.Duration // C4's last look, at the end of the run, comes at least this long after its settle look
	TLSReady        time.Duration // after the install, how long the served names may take to answer TLS (a proxy a swarm deploys binds late)
	Scan            time.Duration // one walk of the machine's store or disk: the blank-state probe, each leak scan, the search of what it built
	Shutdown        time.Duration // the restart's clean shutdown, before Incus is asked to force the stop
	TeardownReserve time.Duration // kept before go test's -timeout; the teardown's own bound
}

func (p *parser) timeouts() Timeouts {
	return Timeouts{
		CreateTimeout:   p.duration("CCCI_CREATE_TIMEOUT", "1m"),
		BootTimeout:     p.duration("CCCI_BOOT_TIMEOUT", "5m"),
		StepTimeout:     p.duration("CCCI_STEP_TIMEOUT", "10m"),
		ConvergeTimeout: p.duration("CCCI_CONVERGE_TIMEOUT", "3m"),
		Settle:          p.duration("CCCI_SETTLE", "5s"),
		Hold:            p.duration("CCCI_HOLD", "30s"),
		TLSReady:        p.duration("CCCI_TLS_READY", "2m"),
		Scan:            p.duration("CCCI_SCAN_TIMEOUT", "5m"),
		Shutdown:        p.duration("CCCI_SHUTDOWN_TIMEOUT", "2m"),
		TeardownReserve: p.duration("CCCI_TEARDOWN_RESERVE", "90s"),
	}
}

// Setting is the value of the timeout setting key (CCCI_*_TIMEOUT …); false if key is none.
func (t Timeouts) Setting(key string) (time.Duration, bool) {
	d, ok := map[string]time.Duration{"CCCI_CREATE_TIMEOUT": t.CreateTimeout, "CCCI_BOOT_TIMEOUT": t.BootTimeout,
		"CCCI_STEP_TIMEOUT": t.StepTimeout, "CCCI_CONVERGE_TIMEOUT": t.ConvergeTimeout, "CCCI_SETTLE": t.Settle,
		"CCCI_HOLD": t.Hold, "CCCI_TLS_READY": t.TLSReady, "CCCI_SCAN_TIMEOUT": t.Scan, "CCCI_SHUTDOWN_TIMEOUT": t.Shutdown,
		"CCCI_TEARDOWN_RESERVE": t.TeardownReserve}[key]
	return d, ok
}

// validate: the bounds must be consistent with each other, and each
// setting must hold the fixed waits it contains (helpers/bounds).
func (t Timeouts) validate(p *parser) {
	longest := map[string]bounds.Wait{} // per setting, the longest wait it holds
	for _, w := range bounds.Table {
		if w.D > longest[w.Within].D {
			longest[w.Within] = w
		}
	}
	for _, key := range slices.Sorted(maps.Keys(longest)) {
		if have, ok := t.Setting(key); ok && have < longest[key].D {
			w := longest[key]
			p.failKey(key, have.String(), fmt.Sprintf("must hold %s, a fixed wait of %s (helpers/bounds)", w.What, w.D))
		}
	}
	if t.Hold < t.Settle {
		p.failKey("CCCI_HOLD", t.Hold.String(), "must be at least CCCI_SETTLE ("+t.Settle.String()+"): the last look is the longer one")
	}
	if t.Shutdown < time.Second || t.Shutdown%time.Second != 0 {
		// Incus takes the shutdown timeout in whole seconds; 0 would mean a forced stop.
		p.failKey("CCCI_SHUTDOWN_TIMEOUT", t.Shutdown.String(), "must be a whole number of seconds, at least 1s (Incus's timeout; 0 would force the stop)")
	}
	if t.Settle >= t.ConvergeTimeout {
		p.failKey("CCCI_SETTLE", t.Settle.String(), "must be shorter than CCCI_CONVERGE_TIMEOUT ("+t.ConvergeTimeout.String()+")")
	}
}

// Reserve is the teardown reserve a run with this -timeout keeps: the
// setting, but at most a third of a short timeout — never less than the
// longest wait teardown makes (helpers/bounds).
func (t Timeouts) Reserve(timeout time.Duration) time.Duration {
	return min(t.TeardownReserve, max(timeout/3, bounds.Longest("CCCI_TEARDOWN_RESERVE")))
}

// Budget is the longest a run may take with these bounds and an install of
// steps blocks: what go test's -timeout must hold, term by term.
type Budget struct {
	Terms []BudgetTerm
	Total time.Duration
}

// BudgetTerm is one bound of the budget.
type BudgetTerm struct {
	What string
	D    time.Duration
}

// Budget adds up the bounds a run waits within, for an install of steps
// blocks and go test's -timeout (which sets the teardown reserve): the
// machine's creation, boot and blank-state probe; the install; what is
// judged of the installed machine (the declarations evaluated on it, its
// store and disk searched, the rebuild with fresh parameters) — none of it
// without an install; and the restart, from its shutdown on.
func (t Timeouts) Budget(steps int, timeout time.Duration) Budget {
	b := Budget{Terms: []BudgetTerm{
		{"create (CCCI_CREATE_TIMEOUT)", t.CreateTimeout},
		{"boot (CCCI_BOOT_TIMEOUT)", t.BootTimeout},
		{"blank-state probe (CCCI_SCAN_TIMEOUT)", t.Scan},
		{fmt.Sprintf("%d install steps × CCCI_STEP_TIMEOUT %s", steps, t.StepTimeout), time.Duration(steps) * t.StepTimeout},
		{"converge (CCCI_CONVERGE_TIMEOUT)", t.ConvergeTimeout},
		{"TLS ready (CCCI_TLS_READY)", t.TLSReady},
		{"hold (CCCI_HOLD)", t.Hold},
	}}
	if steps > 0 {
		b.Terms = append(b.Terms,
			BudgetTerm{"judging the target's sshd on the runner, before the install (CCCI_STEP_TIMEOUT)", t.StepTimeout},
			BudgetTerm{"reading git's record of the install's fetches (a probe of the disk)", bounds.Scan},
			BudgetTerm{"evaluating the declarations on the machine (CCCI_STEP_TIMEOUT)", t.StepTimeout},
			BudgetTerm{"3 searches of the machine: store, readable files, what it built (3 × CCCI_SCAN_TIMEOUT)", 3 * t.Scan},
			BudgetTerm{"the rebuild with fresh parameters (CCCI_STEP_TIMEOUT)", t.StepTimeout})
	}
	b.Terms = append(b.Terms,
		BudgetTerm{"restart: clean shutdown, then a forced stop (CCCI_SHUTDOWN_TIMEOUT)", t.Shutdown},
		BudgetTerm{"restart: boot (CCCI_BOOT_TIMEOUT)", t.BootTimeout},
		BudgetTerm{"restart: converge (CCCI_CONVERGE_TIMEOUT)", t.ConvergeTimeout},
		BudgetTerm{"teardown reserve", t.Reserve(timeout)})
	for _, term := range b.Terms {
		b.Total += term.D
	}
	return b
}

func (b Budget) String() string {
	parts := make([]string, len(b.Terms))
	for i, t := range b.Terms {
		parts[i] = t.What + " " + t.D.String()
	}
	return strings.Join(parts, " + ") + " = " + b.Total.String()
}

// TLSWait is how long a TLS check retries a name that does not answer yet:
// until CCCI_TLS_READY after the machine came up (the install's end, or a
// restart's: a proxy deployed by a swarm oneshot binds 443 after the units
// converged, at every boot), and at least a few seconds (a moment without
// a listener is not a verdict).
func (t Timeouts) TLSWait(up, now time.Time) time.Duration {
	return max(minTLSWait, up.Add(t.TLSReady).Sub(now))
}

const minTLSWait = 3 * time.Second

// TimeoutNeeded is the -timeout a run needs when elapsed has already passed:
// rounded up to the minute, and with the reserve it implies.
func (t Timeouts) TimeoutNeeded(steps int, elapsed time.Duration) time.Duration {
	for d := time.Minute; ; d += time.Minute {
		if elapsed+t.Budget(steps, d).Total <= d {
			return d
		}
	}
}

// Target is where the target is and how a run fetches and reaches it.
type Target struct {
	BaseRepoURL       string // the base repo, as the machine clones it
	SecretsRepoURL    string // the private secrets repo
	AgeKeyFile        string // the operator's copy of the bootstrap age key (0600)
	AccessFile        string // the sops file in the base holding the secrets repo's read credential
	AccessKey         string // its key there: an HTTPS token, or an OpenSSH private key (a read-only deploy key)
	SecretsKnownHosts string // known_hosts pinning the secrets repo's SSH host key (with a deploy key)
	// SecretsAnonymousURL is where the forge serves the secrets repo to
	// anonymous readers (HTTP(S)); "" = the repo's own URL, or the https
	// form of an SSH one; "none" = the server has no anonymous channel.
	SecretsAnonymousURL string
	AgeKeyPath          string // where install.md provisions it on the machine
	NixOSHost           string // the base's nixosConfigurations.<host> ("" = its only one)
	Domain              string // the instance's wildcard domain
	Gateway             string // the TLS-passthrough gateway (a parameter of the target)
	TLSAddr             string // where to ask for TLS ("" = the machine's address:443)
	TLSCA               string // PEM roots for the served certificate ("" = system roots)
	// TLSServerNames are the names under Domain the target serves over TLS:
	// each is asked by SNI (the git leaf, a chain that verifies) and over
	// HTTPS (a success status).
	TLSServerNames []string
}

// Expectations are what the C-tests expect of the target that its own
// declarations do not say (the units and secrets it declares are read
// from its configuration; these are the plan's numbers and phrases).
type Expectations struct {
	Units            []string // the oneshots/services that must converge ("" = those the target's configuration starts at boot)
	Egress           string   // "nft": observe the machine's connections during the install (lab); "off"
	EgressAllow      []string // host:port the machine may reach besides the two repos
	FetchLog         string   // the git server's record of requests by repository (helpers/fetchlog; "" = not judged)
	PublicMaterial   []string // sha256 fingerprints of secret-shaped material declared public (a test key)
	Reference        string   // project/name of the running reference system (cc-nix-test)
	ReferenceMemory  []int64  // the sizes its limits.memory may be, in bytes (the plan's "4 GB": 4GiB or 4GB)
	RequiredSecrets  []string // names that must be in git, encrypted, besides what the target declares
	CertMinDays      int      // the certificate in git must be valid this much longer
	ScanPaths        []string // machine paths searched for plaintext secrets
	StalePhrases     []string // docs must not describe the old operator-dropped cert (case-insensitive)
	ForbiddenPhrases []string // the D8 evidence must not say these (case-insensitive)
	BlankAbsent      []string // paths a blank machine must not have
}

// DefaultTLSHost is the host under CCCI_DOMAIN the TLS checks ask for when
// CCCI_TLS_SERVER_NAME is not set: cc-ci's dashboard, which the plan lists
// among the services its proxy serves.
const DefaultTLSHost = "dashboard"

func (p *parser) target() Target {
	t := Target{
		BaseRepoURL:         p.repoURL("CCCI_BASE_REPO_URL"),
		SecretsRepoURL:      p.repoURL("CCCI_SECRETS_REPO_URL"),
		AgeKeyFile:          p.str("CCCI_AGE_KEY_FILE", ""),
		AccessFile:          p.str("CCCI_SECRETS_ACCESS_FILE", "bootstrap/access.sops.yaml"),
		AccessKey:           p.str("CCCI_SECRETS_ACCESS_KEY", "secrets_repo_token"),
		SecretsKnownHosts:   p.str("CCCI_SECRETS_KNOWN_HOSTS", ""),
		SecretsAnonymousURL: p.anonymousURL("CCCI_SECRETS_ANONYMOUS_URL"),
		AgeKeyPath:          p.str("CCCI_AGE_KEY_PATH", DefaultAgeKeyPath),
		NixOSHost:           p.str("CCCI_NIXOS_HOST", ""),
		Domain:              p.str("CCCI_DOMAIN", "ci.lab.test"),
		Gateway:             p.str("CCCI_GATEWAY", ""),
		TLSAddr:             p.str("CCCI_TLS_ADDR", ""),
		TLSCA:               p.str("CCCI_TLS_CA", ""),
	}
	t.TLSServerNames = p.optionalList("CCCI_TLS_SERVER_NAME", "")
	if len(t.TLSServerNames) == 0 {
		t.TLSServerNames = []string{DefaultTLSHost + "." + t.Domain}
	}
	// The gateway forwards 443 to the production instance, which serves the
	// same certificate from git: TLS asked there judges production, whatever
	// the throwaway serves.
	if h, _, err := net.SplitHostPort(t.TLSAddr); err == nil && t.Gateway != "" && h == t.Gateway {
		p.failKey("CCCI_TLS_ADDR", t.TLSAddr, "is the gateway (CCCI_GATEWAY "+t.Gateway+"), which forwards to the production instance: TLS is judged at the throwaway's own address (leave CCCI_TLS_ADDR unset)")
	}
	for _, n := range t.TLSServerNames {
		if n != t.Domain && !strings.HasSuffix(n, "."+t.Domain) {
			p.failKey("CCCI_TLS_SERVER_NAME", n, "must be a name under CCCI_DOMAIN ("+t.Domain+"): the certificate in git is the domain's")
		}
	}
	return t
}

// repoURL reads a repo's URL, which must carry no credentials: a client
// sends them with every request (the anonymous probe's included) and the
// URL is written into the evidence. A password, or any user info over
// HTTP(S) (a token given as the user name), is refused; the value in the
// error has it removed. ssh://git@host/… names the account, no secret.
func (p *parser) repoURL(key string) string {
	v := p.str(key, "")
	u, err := url.Parse(v)
	if err != nil || u.User == nil {
		return v
	}
	if _, password := u.User.Password(); password || u.Scheme == "http" || u.Scheme == "https" {
		u.User = nil
		p.failKey(key, u.String(), "carries credentials before its host (shown removed): the secrets repo's access is a sops-encrypted file of the base (CCCI_SECRETS_ACCESS_FILE), never part of a URL")
	}
	return v
}

// anonymousURL reads where an anonymous reader is tried: "", "none", or an
// HTTP(S) URL with no user info (anonymous means no credentials).
func (p *parser) anonymousURL(key string) string {
	v := p.str(key, "")
	if v == "" || v == "none" {
		return v
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		p.failKey(key, v, "must be the http(s) address where the forge serves the repo to anonymous readers, with no user info, or none")
	}
	return v
}

func (p *parser) expectations() Expectations {
	return Expectations{
		Units:            p.optionalList("CCCI_UNITS", ""),
		Egress:           p.oneOf("CCCI_EGRESS", "off", "off", "nft"),
		EgressAllow:      p.optionalList("CCCI_EGRESS_ALLOW", ""),
		FetchLog:         p.str("CCCI_FETCH_LOG", ""),
		PublicMaterial:   p.optionalList("CCCI_PUBLIC_MATERIAL", ""),
		Reference:        p.str("CCCI_REFERENCE", "terraform-ci/cc-nix-test"),
		ReferenceMemory:  p.sizes("CCCI_REFERENCE_MEMORY", "4GiB,4GB"),
		RequiredSecrets:  p.optionalList("CCCI_REQUIRED_SECRETS", ""), // none by default: what the target declares is required
		CertMinDays:      p.positiveInt("CCCI_CERT_MIN_DAYS", "14"),
		ScanPaths:        p.list("CCCI_SCAN_PATHS", "/nix/store"),
		StalePhrases:     p.list("CCCI_STALE_PHRASES", "drops the cert,drop the cert,cert file by hand,certificate files by hand,certificate file by hand,operator drops"),
		ForbiddenPhrases: p.list("CCCI_FORBIDDEN_PHRASES", "infeasible by design"),
		BlankAbsent:      p.list("CCCI_BLANK_ABSENT", "/var/lib/sops-nix,/var/lib/ci-certs,/run/secrets,/root/cc-ci,/root/cc-ci-secrets"),
	}
}

// Evidence is where a run's records go and how they are judged.
type Evidence struct {
	ReviewFile string        // Markdown here, JSONL beside it
	OutDir     string        // the harness's own records for the reviewer (live D8 record …); never in a target clone
	SigningKey string        // the runner's ed25519 SSH key: each evidence entry is signed with it ("" = unsigned)
	D8Chain    string        // the evidence chain (REVIEW.jsonl) the D8 live part's cited run must be in
	D8Signers  string        // allowed_signers file: a cited run's entry must be signed by a key it lists
	D8MaxAge   time.Duration // how recent that run must be (the plan: re-verified within 24h)
}

func (p *parser) evidence() Evidence {
	e := Evidence{
		ReviewFile: p.str("CCCI_REVIEW_FILE", defaultReviewFile()),
		OutDir:     p.str("CCCI_OUT_DIR", filepath.Join(filepath.Dir(defaultReviewFile()), "out")),
		SigningKey: p.str("CCCI_SIGNING_KEY", ""),
		D8MaxAge:   p.duration("CCCI_D8_MAX_AGE", "24h"),
		D8Signers:  p.str("CCCI_D8_ALLOWED_SIGNERS", ""),
	}
	e.D8Chain = p.str("CCCI_D8_CHAIN", strings.TrimSuffix(e.ReviewFile, filepath.Ext(e.ReviewFile))+".jsonl")
	return e
}

// Stages are terratest-style switches, read from the environment only
// (SKIP_teardown=1 …): which stages of a run to skip while debugging.
type Stages struct {
	KeepMachine  bool // SKIP_teardown: keep the machine, write its state to StateFile
	ReuseMachine bool // SKIP_provision: reuse the machine StateFile names
	ReuseInstall bool // SKIP_install: judge the kept machine's recorded install, do not run install.md again
	// NoMachine (CCCI_MACHINE=none): create no machine; what needs one
	// skips, saying so, and the repos, the Incus API and the evidence are
	// judged alone. The defect matrix's repos tier; never evidence.
	NoMachine bool
}

func (p *parser) stages() Stages {
	on := func(name string) bool {
		v, ok := p.src.env(name)
		if ok && v != "1" && v != "0" && v != "" {
			p.fail(name, v, "environment", "want 1 (or unset)")
		}
		return v == "1"
	}
	st := Stages{KeepMachine: on("SKIP_teardown"), ReuseMachine: on("SKIP_provision"), ReuseInstall: on("SKIP_install")}
	if st.ReuseInstall && !st.ReuseMachine {
		p.fail("SKIP_install", "1", "environment", "needs SKIP_provision=1: it re-runs the checks on a kept machine that is already installed")
	}
	st.NoMachine = p.oneOf("CCCI_MACHINE", "create", "create", "none") == "none"
	if st.NoMachine && (st.KeepMachine || st.ReuseMachine) {
		p.failKey("CCCI_MACHINE", "none", "creates no machine: there is none to keep or reuse (SKIP_teardown, SKIP_provision)")
	}
	return st
}
