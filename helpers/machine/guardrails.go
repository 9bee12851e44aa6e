package machine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
)

// Guardrails are enforced in code before anything is created.
type Guardrails struct {
	AllowedProjects       []string
	RAMCap                int64 // bytes: running instances + the new one must fit
	DefaultInstanceMemory int64 // bytes counted for a running instance without limits.memory
	MaxMachines           int   // per Manager (per test run)
}

// GuardrailError is a refusal: nothing was created.
type GuardrailError struct {
	Rule   string // "project allow-list", "RAM cap", "machines per run"
	Detail string
}

func (e *GuardrailError) Error() string {
	return fmt.Sprintf("guardrail %q refused to create a machine: %s", e.Rule, e.Detail)
}

// RAMReport is the arithmetic behind the RAM guardrail, kept as evidence.
type RAMReport struct {
	Terms   []RAMTerm
	New     int64
	Total   int64
	Cap     int64
	Fits    bool
	Partial bool // some projects could not be listed: the sum may be low
}

// RAMTerm is one running instance in the sum.
type RAMTerm struct {
	Instance string // project/name
	Bytes    int64
	Assumed  bool // no limits.memory: DefaultInstanceMemory counted
}

// String shows the sum the way a reviewer would check it by hand.
func (r RAMReport) String() string {
	parts := make([]string, 0, len(r.Terms)+1)
	for _, t := range r.Terms {
		s := fmt.Sprintf("%s %s", t.Instance, config.FormatSize(t.Bytes))
		if t.Assumed {
			s += " (no limits.memory, assumed)"
		}
		parts = append(parts, s)
	}
	if r.New > 0 {
		parts = append(parts, "new "+config.FormatSize(r.New))
	}
	op := "≤"
	if !r.Fits {
		op = ">"
	}
	s := fmt.Sprintf("%s = %s %s cap %s", strings.Join(parts, " + "), config.FormatSize(r.Total), op, config.FormatSize(r.Cap))
	if r.Partial {
		s += " (some projects not visible to these credentials)"
	}
	return s
}

// RAM sums limits.memory of every RUNNING instance the credentials can see,
// across projects, plus newBytes.
func RAM(ctx context.Context, c *incus.Client, g Guardrails, newBytes int64) (RAMReport, error) {
	r := RAMReport{New: newBytes, Cap: g.RAMCap}
	all, err := c.Instances(ctx, "")
	if errors.Is(err, incus.ErrForbidden) {
		// Restricted credentials cannot list all projects: sum what they can see.
		all, err = instancesPerProject(ctx, c)
		r.Partial = true
	}
	if err != nil {
		return r, fmt.Errorf("RAM guardrail: list instances: %w", err)
	}
	for _, in := range all {
		if in.Status != "Running" {
			continue
		}
		t := RAMTerm{Instance: in.Project + "/" + in.Name}
		if v := in.ExpandedConfig["limits.memory"]; v != "" {
			n, perr := config.ParseSize(v)
			if perr != nil {
				return r, fmt.Errorf("RAM guardrail: instance %s limits.memory: %w", t.Instance, perr)
			}
			t.Bytes = n
		} else {
			t.Bytes, t.Assumed = g.DefaultInstanceMemory, true
		}
		r.Terms = append(r.Terms, t)
		r.Total += t.Bytes
	}
	sort.Slice(r.Terms, func(i, j int) bool { return r.Terms[i].Instance < r.Terms[j].Instance })
	r.Total += newBytes
	r.Fits = r.Total <= r.Cap
	return r, nil
}

func instancesPerProject(ctx context.Context, c *incus.Client) ([]incus.Instance, error) {
	ps, err := c.Projects(ctx)
	if err != nil {
		return nil, err
	}
	var out []incus.Instance
	for _, p := range ps {
		ins, err := c.Instances(ctx, p.Name)
		if errors.Is(err, incus.ErrForbidden) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ins...)
	}
	return out, nil
}

// checkProject refuses any project outside the allow-list.
func (g Guardrails) checkProject(project string) error {
	if !slices.Contains(g.AllowedProjects, project) {
		return &GuardrailError{Rule: "project allow-list",
			Detail: fmt.Sprintf("project %q is not in the allow-list [%s]", project, strings.Join(g.AllowedProjects, ", "))}
	}
	return nil
}

// GuardrailsFrom takes the guardrail numbers from the configuration.
func GuardrailsFrom(c *config.Config) Guardrails {
	return Guardrails{AllowedProjects: c.AllowedProjects, RAMCap: c.RAMCap,
		DefaultInstanceMemory: c.DefaultInstanceMemory, MaxMachines: c.MaxMachines}
}

// SpecFrom takes the machine spec from the configuration.
func SpecFrom(c *config.Config) Spec {
	return Spec{Project: c.Project, Image: c.Image, Type: c.InstanceType, Memory: c.Memory,
		TTL: c.TTL, BootTimeout: c.BootTimeout, SSHUser: c.SSHUser}
}
