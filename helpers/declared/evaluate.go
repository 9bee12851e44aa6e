package declared

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// Source is how the evaluation gets the pinned repos: each as a tar of its
// committed tree (from the git objects, target.Repos.Trees), and how the base pins the secrets repo —
// the flake input to override with it, or the submodule path to put it at.
type Source struct {
	Base, Secrets []byte
	Input         string // a flake input's name, or ""
	Submodule     string // a submodule's path in the base, or ""
}

const nixFlags = "--extra-experimental-features 'nix-command flakes'"

// Evaluate reads the declarations on the machine: the trees go to a private
// tmpfs directory, Nix evaluates nixosConfigurations.<host>.config with
// Apply (host "" = the configuration's only host), the directory is removed.
// Nothing is built: the evaluation reads the flake's own code and the inputs
// its lock pins (which the switch has already fetched).
func Evaluate(ctx context.Context, cl *remote.Client, src Source, host string, timeout time.Duration) (*Declarations, error) {
	if src.Submodule != "" && (path.IsAbs(src.Submodule) || strings.Contains(src.Submodule, "..")) {
		return nil, fmt.Errorf("declarations: submodule path %q is not inside the base", src.Submodule)
	}
	res, err := cl.RunInput(ctx, `base=/dev/shm; [ -d "$base" ] || base=/tmp
d=$(mktemp -d "$base/ccci-eval.XXXXXX"); mkdir "$d/base" "$d/secrets"; tar -x -C "$d/base"; echo "$d"`, src.Base, timeout)
	if err != nil {
		return nil, fmt.Errorf("declarations: copy the base to the machine: %w", err)
	}
	dir := strings.TrimSpace(string(res.Stdout))
	defer func() { _, _ = cl.Run(context.WithoutCancel(ctx), "rm -rf "+remote.ShellQuote(dir), bounds.Cleanup) }()
	into := dir + "/secrets"
	if src.Submodule != "" {
		into = dir + "/base/" + src.Submodule
	}
	if _, err := cl.RunInput(ctx, "mkdir -p "+remote.ShellQuote(into)+" && tar -x -C "+remote.ShellQuote(into), src.Secrets, timeout); err != nil {
		return nil, fmt.Errorf("declarations: copy the secrets repo to the machine: %w", err)
	}
	override := ""
	if src.Input != "" {
		override = " --override-input " + remote.ShellQuote(src.Input) + " " + remote.ShellQuote("path:"+dir+"/secrets")
	}
	eval := func(attr, apply string) ([]byte, error) {
		ref := remote.ShellQuote("path:" + dir + "/base#" + attr)
		res, err := cl.Run(ctx, "nix "+nixFlags+" eval --json --no-write-lock-file "+ref+override+" --apply "+remote.ShellQuote(apply), timeout)
		if err != nil {
			return nil, fmt.Errorf("declarations: nix eval of %s on the machine: %w", attr, err)
		}
		return res.Stdout, nil
	}
	if host == "" {
		b, err := eval("nixosConfigurations", "builtins.attrNames")
		if err != nil {
			return nil, err
		}
		var hosts []string
		if err := json.Unmarshal(b, &hosts); err != nil || len(hosts) != 1 {
			return nil, fmt.Errorf("declarations: the base's nixosConfigurations are %s: name the host (CCCI_NIXOS_HOST)", strings.TrimSpace(string(b)))
		}
		host = hosts[0]
	}
	if !hostRE.MatchString(host) {
		return nil, fmt.Errorf("declarations: host %q is not a configuration name", host)
	}
	b, err := eval(`nixosConfigurations."`+host+`".config`, Apply)
	if err != nil {
		return nil, err
	}
	return Parse(host, b)
}
