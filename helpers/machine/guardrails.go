package machine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/size"
)

// GuardrailError is a refusal: nothing was created.
type GuardrailError struct {
	Rule   string // "project allow-list", "RAM cap", "machines per run"
	Detail string
}

func (e *GuardrailError) Error() string {
	return fmt.Sprintf("guardrail %q refused to create a machine: %s", e.Rule, e.Detail)
}

// RAMReport is the arithmetic behind the RAM guardrail, kept as evidence.
// Instances of other projects are one sum: the evidence of this harness
// names no other tenant's instances.
type RAMReport struct {
	Terms   []RAMTerm // instances in the allowed projects
	Others  RAMTerm   // every instance of the other projects, added up
	New     int64
	Total   int64
	Cap     int64
	Fits    bool
	Partial bool   // the credentials do not see every project: the listing is not the whole host
	Who     string // why partial: the identity the server sees (a restricted certificate …)
	Stated  int64  // with Partial: the operator's figure for what is not seen (-1: none)
}

// RAMTerm is one instance (or one group) in the sum.
type RAMTerm struct {
	Instance string // project/name, or a description of the group
	Bytes    int64
	Assumed  bool // no limits.memory: DefaultInstanceMemory counted
	Count    int  // instances in the term
	// A machine of a harness run (its created-by label): it goes when its
	// run tears it down, or after Expires, when any run's reaper takes it
	// (zero: the label does not parse, and the reaper leaves it). Kept: a
	// run kept it on purpose (SKIP_teardown).
	Harness bool
	Expires time.Time
	Kept    bool
}

// note is what the sum says of a term besides its size.
func (t RAMTerm) note() string {
	var n []string
	if t.Assumed {
		n = append(n, "no limits.memory, assumed")
	}
	switch {
	case !t.Harness:
	case t.Kept:
		n = append(n, "a harness machine kept on purpose")
	case t.Expires.IsZero():
		n = append(n, "a harness machine whose expires-at does not parse")
	default:
		n = append(n, "a harness machine, expires-at "+t.Expires.UTC().Format(time.RFC3339))
	}
	if len(n) == 0 {
		return ""
	}
	return " (" + strings.Join(n, "; ") + ")"
}

// String shows the sum the way a reviewer would check it by hand.
func (r RAMReport) String() string {
	parts := make([]string, 0, len(r.Terms)+2)
	for _, t := range r.Terms {
		parts = append(parts, fmt.Sprintf("%s %s%s", t.Instance, size.Format(t.Bytes), t.note()))
	}
	if r.Others.Count > 0 {
		parts = append(parts, fmt.Sprintf("%d instance(s) in other projects %s", r.Others.Count, size.Format(r.Others.Bytes)))
	}
	if r.Partial && r.Stated >= 0 {
		parts = append(parts, "unseen projects (stated in CCCI_OTHER_TENANTS_RAM) "+size.Format(r.Stated))
	}
	if r.New > 0 {
		parts = append(parts, "new "+size.Format(r.New))
	}
	if len(parts) == 0 {
		parts = append(parts, "nothing running")
	}
	op := "≤"
	if r.Total > r.Cap {
		op = ">"
	}
	s := fmt.Sprintf("%s = %s %s cap %s", strings.Join(parts, " + "), size.Format(r.Total), op, size.Format(r.Cap))
	if r.Partial {
		if r.Stated < 0 {
			s += fmt.Sprintf(" — but the sum is PARTIAL: %s, so the instances of the projects it cannot see are not in it; "+
				"refused until the operator states their RAM in CCCI_OTHER_TENANTS_RAM", r.Who)
		} else {
			s += " (" + r.Who + ")"
		}
	}
	return s
}

// usesRAM: only a stopped instance holds no memory. Frozen, starting,
// stopping, errored or unknown states are counted (fail closed).
func usesRAM(status string) bool { return status != "Stopped" }

// RAM sums limits.memory of every instance that may hold memory, across
// every project the credentials can see, plus newBytes. It fails closed: a
// project whose instances cannot be listed, a limit that cannot be read, or
// a sum that overflows is an error, never a smaller number.
func RAM(ctx context.Context, c *incus.Client, g config.Guardrails, newBytes int64) (RAMReport, error) {
	r := RAMReport{New: newBytes, Cap: g.RAMCap, Stated: -1}
	// A restricted certificate's all-projects listing is silently filtered
	// (Client.Identity), so who is asking decides whether the sum can be whole.
	id, err := c.Identity(ctx)
	if err != nil {
		return r, fmt.Errorf("RAM guardrail: who the server takes us for: %w", err)
	}
	if !id.SeesEverything() {
		r.Partial, r.Who = true, id.Description
	}
	all, err := c.Instances(ctx, "")
	if errors.Is(err, incus.ErrForbidden) {
		// Credentials refused the all-projects listing: every project they list must be listed.
		all, err = instancesPerProject(ctx, c)
		r.Partial = true
		if r.Who == "" {
			r.Who = "the all-projects listing was refused"
		}
	}
	if err != nil {
		return r, fmt.Errorf("RAM guardrail: list instances: %w", err)
	}
	r.Total = newBytes
	if r.Partial && g.OtherTenantsStated {
		r.Stated = g.OtherTenantsRAM
		if r.Total, err = size.Add(r.Total, r.Stated); err != nil {
			return r, fmt.Errorf("RAM guardrail: %w", err)
		}
	}
	for _, in := range all {
		if !usesRAM(in.Status) {
			continue
		}
		t := RAMTerm{Instance: in.Project + "/" + in.Name, Count: 1}
		if v := in.ExpandedConfig["limits.memory"]; v != "" {
			n, perr := size.Parse(v)
			if perr != nil {
				return r, fmt.Errorf("RAM guardrail: instance %s limits.memory: %w", t.Instance, perr)
			}
			t.Bytes = n
		} else {
			t.Bytes, t.Assumed = g.DefaultInstanceMemory, true
		}
		if r.Total, err = size.Add(r.Total, t.Bytes); err != nil {
			return r, fmt.Errorf("RAM guardrail: %w", err)
		}
		if slices.Contains(g.AllowedProjects, in.Project) {
			if l := (Labels{Prefix: g.LabelPrefix}); l.Marked(&in) {
				t.Harness, t.Kept = true, in.Config[l.Kept()] == "true"
				t.Expires, _ = l.Expiry(&in) // zero when it is not a time: never shown raw
			}
			r.Terms = append(r.Terms, t)
			continue
		}
		r.Others.Count++
		r.Others.Bytes += t.Bytes // cannot overflow: bounded by r.Total
	}
	sort.Slice(r.Terms, func(i, j int) bool { return r.Terms[i].Instance < r.Terms[j].Instance })
	r.Fits = r.Total <= r.Cap && (!r.Partial || r.Stated >= 0)
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
		if err != nil {
			return nil, fmt.Errorf("project %s is listed but its instances cannot be: %w", p.Name, err)
		}
		out = append(out, ins...)
	}
	return out, nil
}

// checkProject refuses any project outside the allow-list, and an empty
// project name, which Incus would read as "default".
func checkProject(g config.Guardrails, project string) error {
	if project == "" {
		return &GuardrailError{Rule: "project allow-list", Detail: "no project given (Incus would use \"default\")"}
	}
	if !slices.Contains(g.AllowedProjects, project) {
		return &GuardrailError{Rule: "project allow-list",
			Detail: fmt.Sprintf("project %q is not in the allow-list [%s]", project, strings.Join(g.AllowedProjects, ", "))}
	}
	return nil
}
