// Package sshaccess says, before the install, whether the run will still
// get into the machine after the switch: the target's sshd as NixOS will
// write it (declared.EvaluateSSH, evaluated on the runner) judged against
// how the run logs in (judge.SSHAccess). The doctor and the run call it.
package sshaccess

import (
	"context"
	"os/exec"
	"time"

	"github.com/cc-ci/acceptance/helpers/declared"
	"github.com/cc-ci/acceptance/helpers/judge"
	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/remote"
	"github.com/cc-ci/acceptance/helpers/target"
)

// AfterSwitch evaluates nixosConfigurations.<host>'s services.openssh on
// the runner and judges it. Without Nix on the runner nothing is judged:
// unjudged says why (the run then learns of a lock-out only when SSH
// refuses it after the switch). user and port are how the run logs in.
func AfterSwitch(ctx context.Context, rp *target.Repos, secretsURL, host, user string, port int, timeout time.Duration, red *redact.Redactor) (problems []judge.Problem, unjudged string, err error) {
	if _, err := exec.LookPath("nix"); err != nil {
		return nil, "no nix on this runner to evaluate the target's services.openssh before the install", nil
	}
	src, err := target.EvalSource(ctx, rp, secretsURL)
	if err != nil {
		return nil, "", err
	}
	s, err := declared.EvaluateSSH(ctx, remote.Local{Redact: red}, src, host, timeout)
	if err != nil {
		return nil, "", err
	}
	if !s.Declared {
		return nil, "the configuration has no services.openssh (not NixOS's modules): the image's sshd is left as it is", nil
	}
	return judge.SSHAccess(s, user, port), "", nil
}
