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

// NixFlags turn on the commands and flakes Nix 2.4 and later still call experimental.
const NixFlags = "--extra-experimental-features 'nix-command flakes'"

// Staged is the pinned repos' trees in a private directory of the machine
// (or of the runner: remote.Local), laid out as the base's flake reads
// them: what Nix evaluates or builds.
type Staged struct {
	cl       remote.Runner
	timeout  time.Duration
	Dir      string // the directory: base/ and, for a flake input, secrets/
	override string // the flags that point the secrets input at secrets/
}

// Stage copies the trees to a private tmpfs directory of the machine (Close
// removes it). Nothing is written into the clones the install made.
func Stage(ctx context.Context, cl remote.Runner, src Source, timeout time.Duration) (*Staged, error) {
	if src.Submodule != "" && (path.IsAbs(src.Submodule) || strings.Contains(src.Submodule, "..")) {
		return nil, fmt.Errorf("declarations: submodule path %q is not inside the base", src.Submodule)
	}
	res, err := cl.RunInput(ctx, `base=/dev/shm; [ -d "$base" ] || base=/tmp
d=$(mktemp -d "$base/ccci-eval.XXXXXX"); mkdir "$d/base" "$d/secrets"; tar -x -C "$d/base"; echo "$d"`, src.Base, timeout)
	if err != nil {
		return nil, fmt.Errorf("declarations: copy the base to the machine: %w", err)
	}
	s := &Staged{cl: cl, timeout: timeout, Dir: strings.TrimSpace(string(res.Stdout))}
	if _, err := cl.RunInput(ctx, "mkdir -p "+remote.ShellQuote(s.SecretsDir(src))+" && tar -x -C "+remote.ShellQuote(s.SecretsDir(src)), src.Secrets, timeout); err != nil {
		s.Close(ctx)
		return nil, fmt.Errorf("declarations: copy the secrets repo to the machine: %w", err)
	}
	if src.Input != "" {
		s.override = " --override-input " + remote.ShellQuote(src.Input) + " " + remote.ShellQuote("path:"+s.Dir+"/secrets")
	}
	return s, nil
}

// SecretsDir is where the secrets repo's tree is: its own directory for a
// flake input, the submodule's path inside the base otherwise.
func (s *Staged) SecretsDir(src Source) string {
	if src.Submodule != "" {
		return s.Dir + "/base/" + src.Submodule
	}
	return s.Dir + "/secrets"
}

// Close removes the directory, even when ctx is done.
func (s *Staged) Close(ctx context.Context) {
	_, _ = s.cl.Run(context.WithoutCancel(ctx), "rm -rf "+remote.ShellQuote(s.Dir), bounds.Cleanup)
}

// Nix runs `nix <verb> [flags] path:<base>#<attr>` with the secrets input
// overridden and the lock file left as committed; attr "" is the flake.
func (s *Staged) Nix(ctx context.Context, verb, flags, attr string) ([]byte, error) {
	ref := "path:" + s.Dir + "/base"
	if attr != "" {
		ref += "#" + attr
	}
	res, err := s.cl.Run(ctx, "nix "+NixFlags+" "+verb+" "+flags+" --no-write-lock-file "+remote.ShellQuote(ref)+s.override, s.timeout)
	if err != nil {
		return nil, fmt.Errorf("nix %s of %s on the machine: %w", verb, attr, err)
	}
	return res.Stdout, nil
}

// Run runs a command on the machine, bounded as the staging is.
func (s *Staged) Run(ctx context.Context, command string) ([]byte, error) {
	res, err := s.cl.Run(ctx, command, s.timeout)
	if err != nil {
		return nil, err
	}
	return res.Stdout, nil
}

// Host is the configuration to read: host, or the base's only
// nixosConfigurations entry when host is "".
func (s *Staged) Host(ctx context.Context, host string) (string, error) {
	if host == "" {
		b, err := s.Nix(ctx, "eval", "--json --apply builtins.attrNames", "nixosConfigurations")
		if err != nil {
			return "", fmt.Errorf("declarations: %w", err)
		}
		var hosts []string
		if err := json.Unmarshal(b, &hosts); err != nil || len(hosts) != 1 {
			return "", fmt.Errorf("declarations: the base's nixosConfigurations are %s: name the host (CCCI_NIXOS_HOST)", strings.TrimSpace(string(b)))
		}
		host = hosts[0]
	}
	if !hostRE.MatchString(host) {
		return "", fmt.Errorf("declarations: host %q is not a configuration name", host)
	}
	return host, nil
}

// staged stages the trees, resolves host ("" = the base's only one), runs
// fn and removes the directory.
func staged(ctx context.Context, cl remote.Runner, src Source, host string, timeout time.Duration, fn func(s *Staged, host string) error) error {
	s, err := Stage(ctx, cl, src, timeout)
	if err != nil {
		return err
	}
	defer s.Close(ctx)
	if host, err = s.Host(ctx, host); err != nil {
		return err
	}
	return fn(s, host)
}

// Config evaluates projection on nixosConfigurations.<host>.config, as JSON.
func (s *Staged) Config(ctx context.Context, host, projection string) ([]byte, error) {
	return s.Nix(ctx, "eval", "--json --apply "+remote.ShellQuote(projection), `nixosConfigurations."`+host+`".config`)
}

// Evaluate reads the declarations on the machine: the trees are staged, Nix
// evaluates nixosConfigurations.<host>.config with Apply (host "" = the
// configuration's only host), the directory is removed. Nothing is built:
// the evaluation reads the flake's own code and the inputs its lock pins
// (which the switch has already fetched).
func Evaluate(ctx context.Context, cl *remote.Client, src Source, host string, timeout time.Duration) (d *Declarations, err error) {
	err = staged(ctx, cl, src, host, timeout, func(s *Staged, host string) error {
		b, err := s.Config(ctx, host, Apply)
		if err != nil {
			return fmt.Errorf("declarations: %w", err)
		}
		if d, err = Parse(host, b); err != nil {
			return err
		}
		if b, err = s.Nix(ctx, "eval", "--json --apply "+remote.ShellQuote(Defined), `nixosConfigurations."`+host+`"`); err != nil {
			return fmt.Errorf("declarations: %w", err)
		}
		meta, err := s.Nix(ctx, "flake metadata", "--json", "")
		if err != nil {
			return fmt.Errorf("declarations: the base's source: %w", err)
		}
		var m struct {
			Path string `json:"path"`
		}
		if err := json.Unmarshal(meta, &m); err != nil {
			return fmt.Errorf("declarations: nix flake metadata printed %.120q: %w", meta, err)
		}
		return d.Own(b, m.Path)
	})
	return d, err
}

// EvaluateSSH reads how the configuration's sshd will let a client in after
// the switch (SSHApply) — on the runner (remote.Local) before the install,
// where the machine's traffic is not watched and nothing of the target is
// on the machine yet: Nix fetches the inputs the lock pins there.
func EvaluateSSH(ctx context.Context, cl remote.Runner, src Source, host string, timeout time.Duration) (ssh *SSH, err error) {
	err = staged(ctx, cl, src, host, timeout, func(s *Staged, host string) error {
		b, err := s.Config(ctx, host, SSHApply)
		if err != nil {
			return fmt.Errorf("services.openssh: %w", err)
		}
		ssh, err = ParseSSH(b)
		return err
	})
	return ssh, err
}
