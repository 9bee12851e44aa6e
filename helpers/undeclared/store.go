package undeclared

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/zricethezav/gitleaks/v8/detect"
	"github.com/zricethezav/gitleaks/v8/sources"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/probe"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// MaxBuilt bounds what InStore reads of the paths a machine built: more is
// not what a configuration makes (its packages come from a cache).
const MaxBuilt = 1 << 30

// builtPath is what `nix path-info --json` says of a store path.
type builtPath struct {
	Path     string `json:"path"`
	NarSize  int64  `json:"narSize"`
	Ultimate bool   `json:"ultimate"`
}

// InStore searches the store paths of top's closure that the machine built
// itself: Nix marks an output it built locally "ultimate"
// (DerivationGoal::registerOutputs; a substituted path is not, nor a
// source added to the store). That is what the configuration made on this
// machine — unit files, scripts, /etc — where a secret generated or
// written at build time lands, world-readable; what a cache served was
// built by others, and the sources are the repos, searched in git. Each
// file is streamed from the machine and searched as the repos' blobs are.
func InStore(ctx context.Context, cl *remote.Client, top string, secrets map[string]string, public []string, timeout time.Duration) ([]Finding, error) {
	d, err := rules()
	if err != nil {
		return nil, fmt.Errorf("undeclared: gitleaks rules: %w", err)
	}
	res, err := cl.Run(ctx, "nix "+declared.NixFlags+" path-info -r --json "+remote.ShellQuote(top), timeout)
	if err != nil {
		return nil, fmt.Errorf("undeclared: the closure of %s: %w", top, err)
	}
	var infos []builtPath
	if err := json.Unmarshal(res.Stdout, &infos); err != nil {
		return nil, fmt.Errorf("undeclared: nix path-info printed %.120q: %w", res.Stdout, err)
	}
	var built []string
	var size int64
	for _, p := range infos {
		if !p.Ultimate {
			continue
		}
		if !probe.IsStorePath(p.Path) {
			return nil, fmt.Errorf("undeclared: nix path-info named %.120q, not a store path", p.Path)
		}
		built, size = append(built, p.Path), size+p.NarSize
	}
	if size > MaxBuilt {
		return nil, fmt.Errorf("undeclared: the machine built %d MiB of %s's closure itself, more than the %d MiB searched", size>>20, top, MaxBuilt>>20)
	}
	if len(built) == 0 {
		return nil, nil
	}
	skip := skipOf(secrets, public)
	var out []Finding
	err = cl.Stream(ctx, "tar -c -f - --null -T - 2>/dev/null", []byte(strings.Join(built, "\x00")+"\x00"), timeout, func(r io.Reader) error {
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("undeclared: the built paths' archive: %w", err)
			}
			if h.Typeflag != tar.TypeReg {
				continue // a symlink is not followed: what it names is searched where it is
			}
			body, err := io.ReadAll(io.LimitReader(tr, MaxBlob))
			if err != nil {
				return fmt.Errorf("undeclared: the built paths' archive: %w", err)
			}
			name := "/" + strings.TrimPrefix(h.Name, "/")
			for _, m := range d.Detect(detect.Fragment(sources.Fragment{Raw: string(body), FilePath: name})) {
				if fp := Fingerprint(m.Secret); !skip[fp] {
					out = append(out, Finding{Repo: "store", Path: name, Line: m.StartLine + 1, Rule: m.RuleID, Fingerprint: fp})
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}
