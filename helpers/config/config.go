// Package config reads the harness configuration: CCCI_* environment
// variables, over an optional KEY=VALUE file (CCCI_CONFIG; by default the lab's
// settings file when it exists). Everything is validated before any side
// effect, and each error names the key and where its value came from.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/incus"
)

// DefaultAgeKeyPath is where install.md provisions the bootstrap key (sops-nix's default).
const DefaultAgeKeyPath = "/var/lib/sops-nix/key.txt"

// LabSettings is where `lab/lab.sh up` writes the settings that point at the lab.
const LabSettings = "/var/lib/cc-ci-lab/lab.env"

// Config is the whole harness configuration. Every field has a CCCI_* key;
// docs/configuration.md lists them.
type Config struct {
	// How to reach Incus.
	Transport       string // "https" (default when a URL is set) or "unix"
	IncusURL        string
	IncusSocket     string
	IncusClientCert string
	IncusClientKey  string
	IncusServerCert string
	IncusTarget     string // cluster member, empty when standalone
	// What to create, and where.
	Project         string
	AllowedProjects []string
	Image           string
	InstanceType    string // container | virtual-machine
	Memory          int64  // bytes, limits.memory of the throwaway machine
	// Guardrails.
	RAMCap                int64 // bytes, sum over running instances incl. the new one
	DefaultInstanceMemory int64 // bytes counted for a running instance with no limits.memory
	MaxMachines           int
	TTL                   time.Duration // expires-at label = creation + TTL; the reaper acts after it
	LabelPrefix           string        // user.<prefix>.run-id etc.
	// Timing.
	BootTimeout     time.Duration // create → SSH ready
	TeardownReserve time.Duration // kept before go test's -timeout for teardown
	// Access and state.
	SSHUser    string
	SSHKeyVia  string        // file (Incus file API, after the agent answers) | template (user.ssh_authorized_keys) | cloud-init
	SecureBoot string        // security.secureboot of a VM: "false" (NixOS images are unsigned), "true", or "profile" (leave it)
	StateFile  string        // run state written with SKIP_teardown, read with SKIP_provision
	ReviewFile string        // evidence: Markdown here, JSONL beside it
	OutDir     string        // the harness's own records for the reviewer (live D8 record …); never in a target clone
	SigningKey string        // the runner's ed25519 SSH key: each evidence entry is signed with it ("" = unsigned)
	D8Chain    string        // the evidence chain (REVIEW.jsonl) the D8 live part's cited run must be in
	D8MaxAge   time.Duration // how recent that run must be (the plan: re-verified within 24h)
	// The target.
	BaseRepoURL      string        // the base repo, as the machine clones it
	SecretsRepoURL   string        // the private secrets repo
	AgeKeyFile       string        // the operator's copy of the bootstrap age key (0600)
	AgeKeyPath       string        // where install.md provisions it on the machine
	Domain           string        // the instance's wildcard domain
	Gateway          string        // the TLS-passthrough gateway (a parameter of the target)
	TLSAddr          string        // where to ask for TLS ("" = the machine's address:443)
	TLSCA            string        // PEM roots for the served certificate ("" = system roots)
	Units            []string      // the oneshots/services that must converge
	StepTimeout      time.Duration // per install.md block
	ConvergeTimeout  time.Duration // units after the switch
	Settle           time.Duration // how long converged units must stay converged (C4)
	Egress           string        // "nft": observe the machine's connections during the install (lab); "off"
	EgressAllow      []string      // host:port the machine may reach besides the two repos
	Reference        string        // project/name of the running reference system (cc-nix-test)
	ReferenceMemory  int64         // its expected limits.memory
	RequiredSecrets  []string      // names that must be in git, encrypted
	CertMinDays      int           // the certificate in git must be valid this much longer
	ScanPaths        []string      // machine paths searched for plaintext secrets
	StalePhrases     []string      // docs must not describe the old operator-dropped cert (case-insensitive)
	ForbiddenPhrases []string      // the D8 evidence must not say these (case-insensitive)
	BlankAbsent      []string      // paths a blank machine must not have
	// Tests of the harness itself.
	DecoyProject string // a project outside the allow-list where tests put decoys
}

// Error is a configuration problem, naming the key and the source of its value.
type Error struct {
	Key    string
	Value  string
	Source string // "environment" or "FILE line N" or "default"
	Reason string
}

func (e *Error) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("config: %s (%s): %s", e.Key, e.Source, e.Reason)
	}
	return fmt.Sprintf("config: %s=%q (%s): %s", e.Key, e.Value, e.Source, e.Reason)
}

// source is a lookup of raw values with their provenance.
type source struct {
	env  func(string) (string, bool)
	file map[string]fileValue
	path string
	seen map[string]bool // every key asked for: the known settings
}

type fileValue struct {
	value string
	line  int
}

func (s *source) get(key, def string) (value, from string) {
	s.seen[key] = true
	if v, ok := s.env(key); ok {
		return v, "environment"
	}
	if fv, ok := s.file[key]; ok {
		return fv.value, fmt.Sprintf("%s line %d", s.path, fv.line)
	}
	return def, "default"
}

// Load reads the configuration from the process environment.
func Load() (*Config, error) { return LoadFrom(os.LookupEnv) }

// LoadFrom reads the configuration with a given environment lookup (tests use a map).
func LoadFrom(env func(string) (string, bool)) (*Config, error) {
	src := &source{env: env, seen: map[string]bool{}}
	path, explicit := env("CCCI_CONFIG")
	if !explicit {
		if _, err := os.Stat(LabSettings); err == nil {
			path = LabSettings
		}
	}
	if path != "" {
		f, err := readFile(path)
		if err != nil {
			return nil, err
		}
		src.file, src.path = f, path
	}
	p := &parser{src: src}
	c := &Config{
		IncusURL:              p.str("CCCI_INCUS_URL", ""),
		IncusSocket:           p.str("CCCI_INCUS_SOCKET", "/var/lib/incus/unix.socket"),
		IncusClientCert:       p.str("CCCI_INCUS_CLIENT_CERT", ""),
		IncusClientKey:        p.str("CCCI_INCUS_CLIENT_KEY", ""),
		IncusServerCert:       p.str("CCCI_INCUS_SERVER_CERT", ""),
		IncusTarget:           p.str("CCCI_INCUS_TARGET", ""),
		Project:               p.str("CCCI_PROJECT", "terraform-ci"),
		Image:                 p.str("CCCI_IMAGE", "ccci-blank"),
		InstanceType:          p.oneOf("CCCI_INSTANCE_TYPE", "container", "container", "virtual-machine"),
		Memory:                p.size("CCCI_MEMORY", "4GiB"),
		RAMCap:                p.size("CCCI_RAM_CAP", "12GiB"),
		DefaultInstanceMemory: p.size("CCCI_DEFAULT_INSTANCE_MEMORY", "1GiB"),
		MaxMachines:           p.positiveInt("CCCI_MAX_MACHINES", "1"),
		TTL:                   p.duration("CCCI_TTL", "2h"),
		LabelPrefix:           p.str("CCCI_LABEL_PREFIX", "ccci"),
		BootTimeout:           p.duration("CCCI_BOOT_TIMEOUT", "5m"),
		TeardownReserve:       p.duration("CCCI_TEARDOWN_RESERVE", "90s"),
		SSHUser:               p.str("CCCI_SSH_USER", "root"),
		SSHKeyVia:             p.oneOf("CCCI_SSH_KEY_VIA", "file", "file", "template", "cloud-init"),
		SecureBoot:            p.oneOf("CCCI_VM_SECUREBOOT", "false", "false", "true", "profile"),
		StateFile:             p.str("CCCI_STATE_FILE", ".run-state.json"),
		DecoyProject:          p.str("CCCI_DECOY_PROJECT", "lichen"),
		ReviewFile:            p.str("CCCI_REVIEW_FILE", defaultReviewFile()),
		OutDir:                p.str("CCCI_OUT_DIR", filepath.Join(filepath.Dir(defaultReviewFile()), "out")),
		D8MaxAge:              p.duration("CCCI_D8_MAX_AGE", "24h"),
		SigningKey:            p.str("CCCI_SIGNING_KEY", ""),
		AgeKeyPath:            p.str("CCCI_AGE_KEY_PATH", DefaultAgeKeyPath),
		BaseRepoURL:           p.str("CCCI_BASE_REPO_URL", ""),
		SecretsRepoURL:        p.str("CCCI_SECRETS_REPO_URL", ""),
		AgeKeyFile:            p.str("CCCI_AGE_KEY_FILE", ""),
		Domain:                p.str("CCCI_DOMAIN", "ci.lab.test"),
		Gateway:               p.str("CCCI_GATEWAY", ""),
		TLSAddr:               p.str("CCCI_TLS_ADDR", ""),
		TLSCA:                 p.str("CCCI_TLS_CA", ""),
		StepTimeout:           p.duration("CCCI_STEP_TIMEOUT", "10m"),
		ConvergeTimeout:       p.duration("CCCI_CONVERGE_TIMEOUT", "3m"),
		Settle:                p.duration("CCCI_SETTLE", "5s"),
		Reference:             p.str("CCCI_REFERENCE", "terraform-ci/cc-nix-test"),
		ReferenceMemory:       p.size("CCCI_REFERENCE_MEMORY", "4GiB"),
		CertMinDays:           p.positiveInt("CCCI_CERT_MIN_DAYS", "14"),
	}
	c.D8Chain = p.str("CCCI_D8_CHAIN", strings.TrimSuffix(c.ReviewFile, filepath.Ext(c.ReviewFile))+".jsonl")
	defTransport := "unix"
	if c.IncusURL != "" {
		defTransport = "https"
	}
	c.Transport = p.oneOf("CCCI_TRANSPORT", defTransport, "https", "unix")
	c.AllowedProjects = p.list("CCCI_ALLOWED_PROJECTS", "terraform-ci")
	c.Units = p.list("CCCI_UNITS", "cc-ci-activation.service,cc-ci-swarm.service,cc-ci-proxy.service,cc-ci-drone.service,cc-ci-bridge.service,cc-ci-dashboard.service")
	c.RequiredSecrets = p.list("CCCI_REQUIRED_SECRETS", "tls_fullchain,tls_privkey,drone_oauth_client_id,drone_oauth_client_secret,drone_rpc_secret,webhook_hmac,registry_username,registry_password")
	c.ScanPaths = p.list("CCCI_SCAN_PATHS", "/nix/store")
	c.Egress = p.oneOf("CCCI_EGRESS", "off", "off", "nft")
	c.EgressAllow = p.optionalList("CCCI_EGRESS_ALLOW", "")
	c.StalePhrases = p.list("CCCI_STALE_PHRASES", "drops the cert,drop the cert,cert file by hand,certificate files by hand,certificate file by hand,operator drops")
	c.ForbiddenPhrases = p.list("CCCI_FORBIDDEN_PHRASES", "infeasible by design")
	c.BlankAbsent = p.list("CCCI_BLANK_ABSENT", "/var/lib/sops-nix,/var/lib/ci-certs,/run/secrets,/root/cc-ci,/root/cc-ci-secrets")
	p.validate(c)
	for key, fv := range src.file {
		if !src.seen[key] && !switches[key] {
			p.fail(key, fv.value, fmt.Sprintf("%s line %d", src.path, fv.line), "unknown setting (a typo?); docs/configuration.md lists them")
		}
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return c, nil
}

type parser struct {
	src  *source
	errs []error
}

func (p *parser) fail(key, value, from, reason string) {
	p.errs = append(p.errs, &Error{Key: key, Value: value, Source: from, Reason: reason})
}

func (p *parser) str(key, def string) string {
	v, _ := p.src.get(key, def)
	return v
}

// switches are CCCI_* variables read elsewhere, not settings.
var switches = map[string]bool{"CCCI_ACCEPTANCE": true, "CCCI_REQUIRE_LAB": true, "CCCI_CONFIG": true}

func (p *parser) oneOf(key, def string, allowed ...string) string {
	v, from := p.src.get(key, def)
	if !slices.Contains(allowed, v) {
		p.fail(key, v, from, "must be one of "+strings.Join(allowed, ", "))
	}
	return v
}

func (p *parser) size(key, def string) int64 {
	v, from := p.src.get(key, def)
	n, err := ParseSize(v)
	if err != nil {
		p.fail(key, v, from, err.Error())
	}
	return n
}

func (p *parser) duration(key, def string) time.Duration {
	v, from := p.src.get(key, def)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.fail(key, v, from, "not a positive duration like 90s, 5m or 2h")
	}
	return d
}

func (p *parser) positiveInt(key, def string) int {
	v, from := p.src.get(key, def)
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		p.fail(key, v, from, "not a whole number ≥ 1")
	}
	return n
}

func (p *parser) list(key, def string) []string {
	out := p.optionalList(key, def)
	if len(out) == 0 {
		v, from := p.src.get(key, def)
		p.fail(key, v, from, "must name at least one item (comma-separated)")
	}
	return out
}

// optionalList is a comma-separated list that may be empty.
func (p *parser) optionalList(key, def string) []string {
	v, _ := p.src.get(key, def)
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// validate checks relations between keys and that files exist.
func (p *parser) validate(c *Config) {
	need := func(key, val string) {
		if val == "" {
			_, from := p.src.get(key, "")
			p.fail(key, "", from, "required when CCCI_TRANSPORT="+c.Transport)
			return
		}
		if _, err := os.Stat(val); err != nil {
			_, from := p.src.get(key, "")
			p.fail(key, val, from, "cannot read: "+errors.Unwrap(err).Error())
		}
	}
	switch c.Transport {
	case "https":
		if c.IncusURL == "" || !strings.HasPrefix(c.IncusURL, "https://") {
			_, from := p.src.get("CCCI_INCUS_URL", "")
			p.fail("CCCI_INCUS_URL", c.IncusURL, from, "must be https://host:port when CCCI_TRANSPORT=https")
		}
		need("CCCI_INCUS_CLIENT_CERT", c.IncusClientCert)
		need("CCCI_INCUS_CLIENT_KEY", c.IncusClientKey)
		need("CCCI_INCUS_SERVER_CERT", c.IncusServerCert)
	case "unix":
		need("CCCI_INCUS_SOCKET", c.IncusSocket)
	}
	if c.SSHKeyVia == "file" && c.SSHUser != "root" {
		_, from := p.src.get("CCCI_SSH_KEY_VIA", "")
		p.fail("CCCI_SSH_KEY_VIA", c.SSHKeyVia, from, "writes /root/.ssh/authorized_keys, so CCCI_SSH_USER must be root (use template or cloud-init for "+c.SSHUser+")")
	}
	if c.Project == "" {
		// An empty project means "default" to Incus: never let a blank value land there.
		_, from := p.src.get("CCCI_PROJECT", "")
		p.fail("CCCI_PROJECT", "", from, "empty: name the project (Incus would read it as \"default\")")
	} else if !slices.Contains(c.AllowedProjects, c.Project) {
		_, from := p.src.get("CCCI_PROJECT", "")
		p.fail("CCCI_PROJECT", c.Project, from, "not in CCCI_ALLOWED_PROJECTS ("+strings.Join(c.AllowedProjects, ",")+")")
	}
	if c.Memory > 0 && c.RAMCap > 0 && c.Memory > c.RAMCap {
		_, from := p.src.get("CCCI_MEMORY", "")
		p.fail("CCCI_MEMORY", FormatSize(c.Memory), from, "larger than CCCI_RAM_CAP "+FormatSize(c.RAMCap))
	}
	if c.Reference != "" {
		_, from := p.src.get("CCCI_REFERENCE", "")
		project, name, ok := strings.Cut(c.Reference, "/")
		switch {
		case !ok || project == "" || name == "":
			p.fail("CCCI_REFERENCE", c.Reference, from, "want project/name")
		case !slices.Contains(c.AllowedProjects, project):
			// It is only read (Incus exec of readlink), but never outside the allow-list.
			p.fail("CCCI_REFERENCE", c.Reference, from, "project "+project+" is not in CCCI_ALLOWED_PROJECTS ("+strings.Join(c.AllowedProjects, ",")+")")
		}
	}
	if !validLabelPrefix(c.LabelPrefix) {
		_, from := p.src.get("CCCI_LABEL_PREFIX", "")
		p.fail("CCCI_LABEL_PREFIX", c.LabelPrefix, from, "use lower-case letters, digits and '-' only")
	}
}

func validLabelPrefix(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// readFile parses KEY=VALUE lines; '#' starts a comment; quotes around a value are removed.
func readFile(path string) (map[string]fileValue, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{Key: "CCCI_CONFIG", Value: path, Source: "environment", Reason: "cannot open: " + errors.Unwrap(err).Error()}
	}
	defer f.Close()
	out := map[string]fileValue{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(strings.TrimPrefix(k, "export "))
		if !ok || !strings.HasPrefix(k, "CCCI_") {
			return nil, &Error{Key: "CCCI_CONFIG", Value: path, Source: fmt.Sprintf("%s line %d", path, n),
				Reason: "expected CCCI_KEY=value"}
		}
		out[k] = fileValue{value: strings.Trim(strings.TrimSpace(v), `"'`), line: n}
	}
	return out, sc.Err()
}

// Incus returns the client settings for one transport ("https" or "unix").
func (c *Config) Incus(transport string) incus.Config {
	if transport == "unix" {
		return incus.Config{Socket: c.IncusSocket, Target: c.IncusTarget}
	}
	return incus.Config{URL: c.IncusURL, ClientCert: c.IncusClientCert, ClientKey: c.IncusClientKey,
		ServerCert: c.IncusServerCert, Target: c.IncusTarget}
}

// HasTarget reports whether a target is configured (repos and the age key).
func (c *Config) HasTarget() bool {
	return c.BaseRepoURL != "" && c.SecretsRepoURL != "" && c.AgeKeyFile != ""
}

// defaultReviewFile is REVIEW.md at the module root (tests run in their
// package directory), or in the working directory outside a module.
func defaultReviewFile() string {
	dir, err := os.Getwd()
	if err != nil {
		return "REVIEW.md"
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "REVIEW.md")
		}
		if filepath.Dir(d) == d {
			return filepath.Join(dir, "REVIEW.md")
		}
	}
}
