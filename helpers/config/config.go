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
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/size"
)

// DefaultAgeKeyPath is where install.md provisions the bootstrap key (sops-nix's default).
const DefaultAgeKeyPath = "/var/lib/sops-nix/key.txt"

// LabSettings is where `lab/lab.sh up` writes the settings that point at the lab.
const LabSettings = "/var/lib/cc-ci-lab/lab.env"

// Config is the whole harness configuration, in named groups
// (settings.go): cfg.Machine.Image, cfg.Target.Domain. Every field has a
// CCCI_* key; docs/configuration.md lists them.
type Config struct {
	Incus      IncusAccess     // how to reach Incus
	Machine    MachineSettings // what to create and how to reach it
	Guardrails Guardrails      // the limits no run may cross
	Timeouts   Timeouts        // every wait that is a setting
	Target     Target          // where the target is and how it is fetched
	Expect     Expectations    // what the C-tests expect of it, beyond its own declarations
	Evidence   Evidence        // where records go and how a cited run is judged
	Stages     Stages          // SKIP_* switches for debugging
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
	c := &Config{Incus: p.incusAccess(), Machine: p.machine(), Guardrails: p.guardrails(),
		Timeouts: p.timeouts(), Target: p.target(), Expect: p.expectations(), Evidence: p.evidence(), Stages: p.stages()}
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
	n, err := size.Parse(v)
	if err != nil {
		p.fail(key, v, from, err.Error())
	}
	return n
}

// sizes is a comma-separated list of sizes, at least one.
func (p *parser) sizes(key, def string) []int64 {
	var out []int64
	for _, v := range p.list(key, def) {
		n, err := size.Parse(v)
		if err != nil {
			_, from := p.src.get(key, def)
			p.fail(key, v, from, err.Error())
		}
		out = append(out, n)
	}
	return out
}

// optionalSize is a size that may be left unset (-1).
func (p *parser) optionalSize(key string) int64 {
	if v, _ := p.src.get(key, ""); v == "" {
		return -1
	}
	return p.size(key, "")
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

// port is a TCP port, 1–65535.
func (p *parser) port(key, def string) int {
	n := p.positiveInt(key, def)
	if n > 65535 {
		p.failKey(key, strconv.Itoa(n), "not a TCP port (1–65535)")
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

// validate checks each group, then the relations between groups.
func (p *parser) validate(c *Config) {
	c.Incus.validate(p)
	c.Machine.validate(p)
	c.Guardrails.validate(p)
	c.Timeouts.validate(p)
	if c.Machine.Project == "" {
		// An empty project means "default" to Incus: never let a blank value land there.
		p.failKey("CCCI_PROJECT", "", "empty: name the project (Incus would read it as \"default\")")
	} else if !slices.Contains(c.Guardrails.AllowedProjects, c.Machine.Project) {
		p.failKey("CCCI_PROJECT", c.Machine.Project, "not in CCCI_ALLOWED_PROJECTS ("+strings.Join(c.Guardrails.AllowedProjects, ",")+")")
	}
	if c.Machine.Memory > 0 && c.Guardrails.RAMCap > 0 && c.Machine.Memory > c.Guardrails.RAMCap {
		p.failKey("CCCI_MEMORY", size.Format(c.Machine.Memory), "larger than CCCI_RAM_CAP "+size.Format(c.Guardrails.RAMCap))
	}
	for _, fp := range c.Expect.PublicMaterial {
		if !sha256Hex.MatchString(fp) {
			p.failKey("CCCI_PUBLIC_MATERIAL", fp, "want the sha256 of the material, 64 hex digits (never the material itself)")
		}
	}
	if c.Expect.Reference != "" {
		project, name, ok := strings.Cut(c.Expect.Reference, "/")
		switch {
		case !ok || project == "" || name == "":
			p.failKey("CCCI_REFERENCE", c.Expect.Reference, "want project/name")
		case !slices.Contains(c.Guardrails.AllowedProjects, project):
			// It is only read (Incus exec of readlink), but never outside the allow-list.
			p.failKey("CCCI_REFERENCE", c.Expect.Reference, "project "+project+" is not in CCCI_ALLOWED_PROJECTS ("+strings.Join(c.Guardrails.AllowedProjects, ",")+")")
		}
	}
}

// sha256Hex is a fingerprint as CCCI_PUBLIC_MATERIAL lists it.
var sha256Hex = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// failKey is fail with the value's source looked up.
func (p *parser) failKey(key, value, reason string) {
	_, from := p.src.get(key, "")
	p.fail(key, value, from, reason)
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

// SettingsFile reads a settings file (CCCI_CONFIG's format, lab.env) as
// key → value, with the same checks a run applies.
func SettingsFile(path string) (map[string]string, error) {
	f, err := readFile(path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(f))
	for k, v := range f {
		out[k] = v.value
	}
	return out, nil
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

// Config is the client settings for one transport ("https" or "unix").
func (a IncusAccess) Config(transport string) incus.Config {
	if transport == "unix" {
		return incus.Config{Socket: a.Socket, Target: a.Member}
	}
	return incus.Config{URL: a.URL, ClientCert: a.ClientCert, ClientKey: a.ClientKey,
		ServerCert: a.ServerCert, Target: a.Member}
}

// HasTarget reports whether a target is configured (repos and the age key).
func (c *Config) HasTarget() bool {
	return c.Target.BaseRepoURL != "" && c.Target.SecretsRepoURL != "" && c.Target.AgeKeyFile != ""
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
