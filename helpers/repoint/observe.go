package repoint

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/probe"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// Closure is what a system's closure holds of some values.
type Closure struct {
	Top string // the system's store path
	// Made maps a value to the files holding it, as a word, in the store
	// paths the configuration made: copies of its own files (a path with no
	// deriver) and outputs of derivations whose recipe names the value. The
	// inputs' sources are not judged (they are the repos and their pins,
	// judged on git), nor outputs built from fetched sources that merely
	// contain the same text.
	Made map[string][]string
}

// Facts are what repointing observed: the changes made, the running
// system's closure (holding the old values) and the rebuilt one's (holding
// both), and where else the base holds each old value as text.
type Facts struct {
	Changes          []Change
	Running, Rebuilt Closure
	Elsewhere        map[string][]string // old value → files of the base holding it besides its site
}

// maxHolders bounds the store paths a value may be held by: more is a value
// too common to be told from other text.
const maxHolders = 2000

// Observe builds the repointed copy of the base on the machine, from the
// pinned inputs the switch fetched, and reads both closures: the running
// system's (/run/current-system) and the rebuilt one's.
func Observe(ctx context.Context, cl *remote.Client, src declared.Source, host string, changes []Change, timeout time.Duration) (*Facts, error) {
	f := &Facts{Changes: changes, Elsewhere: map[string][]string{}}
	for _, c := range changes {
		held, err := holding(src.Base, c.Value, c.Site)
		if err != nil {
			return nil, err
		}
		f.Elsewhere[c.Value] = held
	}
	repointed := src
	var err error
	if repointed.Base, err = Repointed(src.Base, changes); err != nil {
		return nil, err
	}
	s, err := declared.Stage(ctx, cl, repointed, timeout)
	if err != nil {
		return nil, err
	}
	defer s.Close(ctx)
	if host, err = s.Host(ctx, host); err != nil {
		return nil, err
	}
	attr := `nixosConfigurations."` + host + `".config.system.build.toplevel`
	b, err := s.Nix(ctx, "build", "--json --no-link", attr)
	if err != nil {
		return nil, fmt.Errorf("repoint: build the base with %s: %w", describe(changes), err)
	}
	var built []struct {
		Outputs map[string]string `json:"outputs"`
	}
	if err := json.Unmarshal(b, &built); err != nil || len(built) != 1 || !probe.IsStorePath(built[0].Outputs["out"]) {
		return nil, fmt.Errorf("repoint: nix build printed no system: %.200q", b)
	}
	sources, err := inputSources(ctx, s, repointed)
	if err != nil {
		return nil, err
	}
	var olds, news []string
	for _, c := range changes {
		olds, news = append(olds, c.Value), append(news, c.New)
	}
	running, err := probe.CurrentSystem(ctx, cl)
	if err != nil || running == "" {
		return nil, fmt.Errorf("repoint: the running system %q: %v", running, err)
	}
	if f.Running, err = closure(ctx, cl, running, olds, sources, timeout); err != nil {
		return nil, err
	}
	if f.Rebuilt, err = closure(ctx, cl, built[0].Outputs["out"], slices.Concat(olds, news), sources, timeout); err != nil {
		return nil, err
	}
	return f, nil
}

func describe(changes []Change) string {
	var d []string
	for _, c := range changes {
		d = append(d, fmt.Sprintf("%s %q set to %q at %s", c.Name, c.Value, c.New, c.Site))
	}
	return strings.Join(d, ", ")
}

// holding are the base's files holding value as text, but for its site.
func holding(baseTar []byte, value string, site Site) ([]string, error) {
	var held []string
	err := eachFile(baseTar, func(name string, b []byte) error {
		n := bytes.Count(b, []byte(value))
		if name == site.Path {
			n-- // the site itself
		}
		if n > 0 {
			held = append(held, name)
		}
		return nil
	})
	return held, err
}

// inputSources are the store paths of the flake's own source and of every
// input it locks (nix flake archive), and of the secrets repo's tree as a
// submodule copy makes it (a path named "source", as a flake input's is).
func inputSources(ctx context.Context, s *declared.Staged, src declared.Source) (map[string]bool, error) {
	b, err := s.Nix(ctx, "flake archive", "--json --dry-run", "")
	if err != nil {
		return nil, fmt.Errorf("repoint: the inputs' sources: %w", err)
	}
	var tree struct {
		Path   string          `json:"path"`
		Inputs json.RawMessage `json:"inputs"`
	}
	out := map[string]bool{}
	var walk func([]byte) error
	walk = func(b []byte) error {
		if err := json.Unmarshal(b, &tree); err != nil {
			return fmt.Errorf("repoint: nix flake archive printed %.200q: %w", b, err)
		}
		if probe.IsStorePath(tree.Path) {
			out[tree.Path] = true
		}
		var inputs map[string]json.RawMessage
		if len(tree.Inputs) > 0 {
			if err := json.Unmarshal(tree.Inputs, &inputs); err != nil {
				return fmt.Errorf("repoint: nix flake archive's inputs: %w", err)
			}
		}
		for _, in := range inputs {
			if err := walk(in); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(b); err != nil {
		return nil, err
	}
	res, err := s.Run(ctx, "nix "+declared.NixFlags+" eval --raw --impure --expr "+
		remote.ShellQuote(`builtins.path { path = "`+s.SecretsDir(src)+`"; name = "source"; }`))
	if err != nil {
		return nil, fmt.Errorf("repoint: the secrets tree's source: %w", err)
	}
	if p := strings.TrimSpace(string(res)); probe.IsStorePath(p) {
		out[p] = true
	}
	return out, nil
}

// storePathOf is the store path a file of the store belongs to.
func storePathOf(file string) string {
	rest, ok := strings.CutPrefix(file, "/nix/store/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return "/nix/store/" + name
}

// closure reads which files of top's closure hold each value as a word, and
// keeps those of the paths the configuration made.
func closure(ctx context.Context, cl *remote.Client, top string, values []string, sources map[string]bool, timeout time.Duration) (Closure, error) {
	c := Closure{Top: top, Made: map[string][]string{}}
	// One pass over the closure for every value (a NixOS closure is
	// gigabytes), then each file found is asked which values it holds.
	var script strings.Builder
	script.WriteString(`t=$(mktemp); p=$(mktemp); c=$(mktemp); trap 'rm -f "$t" "$p" "$c"' EXIT
nix-store -qR ` + remote.ShellQuote(top) + ` >"$t"
vals=(`)
	for _, v := range values {
		script.WriteString(remote.ShellQuote(v) + " ")
	}
	script.WriteString(`)
printf '%s\n' "${vals[@]}" >"$p"
# grep exits 1 when nothing matched: not an error here.
xargs -d '\n' -a "$t" sh -c 'grep -rlswZF -f "$0" -- "$@"; [ $? -le 1 ]' "$p" >"$c"
while IFS= read -r -d '' f; do
  printf '%s\0' "$f"
  for i in "${!vals[@]}"; do grep -qswF -e "${vals[$i]}" -- "$f" && printf '%d,' "$i"; done
  printf '\0'
done <"$c"`)
	for _, v := range values {
		if strings.ContainsAny(v, "\n\x00") {
			return c, fmt.Errorf("repoint: %q cannot be searched for", v)
		}
	}
	res, err := cl.Run(ctx, script.String(), timeout)
	if err != nil {
		return c, fmt.Errorf("repoint: search the closure of %s: %w", top, err)
	}
	var toks []string
	if out := strings.TrimSuffix(string(res.Stdout), "\x00"); out != "" {
		toks = strings.Split(out, "\x00")
	}
	if len(toks)%2 != 0 {
		return c, fmt.Errorf("repoint: the closure's search printed %d fields", len(toks))
	}
	hits := map[string][]string{}
	holders := map[string]bool{}
	for i := 0; i+1 < len(toks); i += 2 {
		file, which := toks[i], toks[i+1]
		sp := storePathOf(file)
		if sp == "" || sources[sp] {
			continue
		}
		for j, v := range values {
			if slices.Contains(strings.Split(which, ","), strconv.Itoa(j)) {
				hits[v] = append(hits[v], file)
				holders[sp] = true
			}
		}
	}
	if len(holders) > maxHolders {
		return c, fmt.Errorf("repoint: %d store paths of %s hold the values %q: too common to tell a use from other text", len(holders), top, values)
	}
	made, err := madeHere(ctx, cl, slices.Sorted(func(yield func(string) bool) {
		for sp := range holders {
			if !yield(sp) {
				return
			}
		}
	}), values, timeout)
	if err != nil {
		return c, err
	}
	for v, files := range hits {
		for _, f := range files {
			if made[storePathOf(f)][v] {
				c.Made[v] = append(c.Made[v], f)
			}
		}
	}
	return c, nil
}

// madeHere says, for each store path, which values the configuration put
// there: all of them for a path with no deriver (a copy of a file the
// evaluation made); otherwise those its derivation names, in its recipe or
// in a source it reads (a module's script copied to the store and
// substituted into the output: its literal is in the source, not the
// recipe). Outputs of fetched upstream sources that merely contain the same
// text name it in neither.
func madeHere(ctx context.Context, cl *remote.Client, paths, values []string, timeout time.Duration) (map[string]map[string]bool, error) {
	out := map[string]map[string]bool{}
	if len(paths) == 0 {
		return out, nil
	}
	var script strings.Builder
	script.WriteString("vals=(")
	for _, v := range values {
		script.WriteString(remote.ShellQuote(v) + " ")
	}
	script.WriteString(`)
while IFS= read -r -d '' sp; do
  d=$(nix-store -qd "$sp")
  printf '%s\0' "$sp"
  if [ "$d" = unknown-deriver ]; then printf 'all\0'; continue; fi
  srcs=""
  [ -f "$d" ] && srcs=$(nix-store -q --references "$d" | grep -v '\.drv$' || true)
  for i in "${!vals[@]}"; do
    [ -f "$d" ] || continue
    if grep -qwsF -e "${vals[$i]}" -- "$d" ||
       [ -n "$(printf '%s\n' "$srcs" | xargs -r -d '\n' grep -rlswF -e "${vals[$i]}" -- 2>/dev/null || true)" ]; then
      printf '%d,' "$i"
    fi
  done
  printf '\0'
done`)
	res, err := cl.RunInput(ctx, script.String(), []byte(strings.Join(paths, "\x00")+"\x00"), timeout)
	if err != nil {
		return nil, fmt.Errorf("repoint: the derivations of the paths holding the values: %w", err)
	}
	toks := strings.Split(strings.TrimSuffix(string(res.Stdout), "\x00"), "\x00")
	if len(toks)%2 != 0 {
		return nil, fmt.Errorf("repoint: the derivations' search printed %d fields", len(toks))
	}
	for i := 0; i < len(toks); i += 2 {
		sp, which := toks[i], toks[i+1]
		if !slices.Contains(paths, sp) {
			return nil, fmt.Errorf("repoint: the derivations' search named %.80q, not asked for", sp)
		}
		out[sp] = map[string]bool{}
		for j, v := range values {
			if which == "all" || slices.Contains(strings.Split(which, ","), strconv.Itoa(j)) {
				out[sp][v] = true
			}
		}
	}
	return out, nil
}
