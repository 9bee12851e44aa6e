package target

// The target's DECISIONS.md: the plan asks it to record the secrets repo's
// linkage (§2, C1) and the final cc-nix-test sizing (C6). A decision is
// believed only as far as it agrees with what the target does: the linkage
// it names must be the one the base uses, the size the one applied.

import (
	"context"
	"regexp"
	"slices"
	"strings"

	"github.com/cc-ci/acceptance/helpers/size"
)

// DecisionsDoc is the target's decision log, at the base's root.
const DecisionsDoc = "DECISIONS.md"

// Decisions are the sections of DECISIONS.md: each heading with the text
// under it, up to the next heading, normalised as a reader would read
// them (ContainsPhrase).
type Decisions struct {
	sections []string
}

// ReadDecisions reads DECISIONS.md as committed; a base without one has
// no decision recorded (empty, no error).
func ReadDecisions(rp *Repos) (*Decisions, error) {
	b, err := rp.readBaseIfThere(context.Background(), DecisionsDoc)
	if err != nil {
		return nil, err
	}
	d := &Decisions{}
	cur := -1
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") || cur < 0 {
			d.sections = append(d.sections, "")
			cur++
		}
		d.sections[cur] += line + "\n"
	}
	for i, s := range d.sections {
		d.sections[i] = normalise(s)
	}
	return d, nil
}

// Linkage names the linkage DECISIONS.md records for the secrets repo: the
// kinds ("flake input", "git submodule") named by a section about it (one
// that speaks of the secrets repo), or none.
func (d *Decisions) Linkage() []string {
	var out []string
	for _, s := range d.sections {
		if !strings.Contains(s, "secrets") {
			continue
		}
		for _, k := range []struct{ phrase, kind string }{{"flake input", "flake input"}, {"submodule", "git submodule"}} {
			if strings.Contains(s, k.phrase) && !slices.Contains(out, k.kind) {
				out = append(out, k.kind)
			}
		}
	}
	return out
}

// prose sizes: "4 GB", "4GiB", "6 gb" (normalised text is lower case).
var proseSize = regexp.MustCompile(`\b([0-9]+(?:\.[0-9]+)?)\s?(gib|gb|mib|mb)\b`)

// Sizing is every size DECISIONS.md states, in bytes, in a section about
// the reference instance (one that names it): "N GB" in prose counts both
// ways (N·10⁹ and N·2³⁰), as the plan writes it.
func (d *Decisions) Sizing(reference string) []int64 {
	var out []int64
	for _, s := range d.sections {
		if !strings.Contains(s, strings.ToLower(reference)) {
			continue
		}
		for _, m := range proseSize.FindAllStringSubmatch(s, -1) {
			unit := map[string][]string{"gb": {"GB", "GiB"}, "gib": {"GiB"}, "mb": {"MB", "MiB"}, "mib": {"MiB"}}[m[2]]
			for _, u := range unit {
				if n, err := size.Parse(m[1] + u); err == nil && !slices.Contains(out, n) {
					out = append(out, n)
				}
			}
		}
	}
	return out
}
