package machine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/wait"
)

// UUIDKey is the config key where Incus records an instance's identity. Two
// instances can share a name over time (deleted, then re-created by someone
// else); they never share a uuid.
const UUIDKey = "volatile.uuid"

// Claim is what the harness knows about an instance it may change: where it
// is, the run whose label it must carry, and the uuid recorded when it was
// created. Every stop, delete, file push and exec is preceded by VerifyOwned.
type Claim struct {
	Project string
	Name    string
	RunID   string // the run-id label the instance must carry
	UUID    string // volatile.uuid as recorded at creation; "" only while our own creation is in flight
}

func (c Claim) String() string { return c.Project + "/" + c.Name }

// OwnershipError is a refusal to touch an instance that is not provably the
// harness's: nothing was changed.
type OwnershipError struct {
	Instance string
	Why      string
}

func (e *OwnershipError) Error() string {
	return fmt.Sprintf("refusing to touch %s: %s; it was left as it is", e.Instance, e.Why)
}

// VerifyOwned reads the instance and checks, in one place, that the harness
// may change it: an allowed project, the harness's created-by label, the
// claimed run id, and the uuid recorded at creation. It returns the instance
// as read. incus.ErrNotFound is returned as is (gone is not a refusal).
func VerifyOwned(ctx context.Context, c *incus.Client, g config.Guardrails, l Labels, cl Claim) (*incus.Instance, error) {
	if err := checkProject(g, cl.Project); err != nil {
		return nil, &OwnershipError{Instance: cl.String(), Why: err.Error()}
	}
	in, err := c.Instance(ctx, cl.Project, cl.Name)
	if err != nil {
		return nil, err
	}
	return in, checkClaim(in, l, cl)
}

func checkClaim(in *incus.Instance, l Labels, cl Claim) error {
	refuse := func(format string, args ...any) error {
		return &OwnershipError{Instance: cl.String(), Why: fmt.Sprintf(format, args...)}
	}
	switch {
	case in.Project != "" && in.Project != cl.Project:
		return refuse("Incus answered for project %q", in.Project)
	case !l.Marked(in):
		return refuse("it does not carry the label %s=%s", l.CreatedBy(), CreatedBy)
	case cl.RunID == "":
		return refuse("no run id to check its %s label against", l.RunID())
	case in.Config[l.RunID()] != cl.RunID:
		return refuse("its label %s=%q is not run %s", l.RunID(), in.Config[l.RunID()], cl.RunID)
	case cl.UUID != "" && in.Config[UUIDKey] != cl.UUID:
		return refuse("its %s %q is not the %q recorded when it was created (a different instance under the same name)",
			UUIDKey, in.Config[UUIDKey], cl.UUID)
	}
	return nil
}

// expired reports whether a labelled instance's expires-at has passed: the
// reaper's claim, for orphans whose run died unclean. A label that cannot be
// read is not ours to judge.
func expired(in *incus.Instance, l Labels, now time.Time) (bool, error) {
	if !l.Marked(in) {
		return false, &OwnershipError{Instance: in.Project + "/" + in.Name,
			Why: fmt.Sprintf("it does not carry the label %s=%s", l.CreatedBy(), CreatedBy)}
	}
	exp, ok := l.Expiry(in)
	if !ok {
		return false, &OwnershipError{Instance: in.Project + "/" + in.Name,
			Why: fmt.Sprintf("label %s=%q is not RFC 3339", l.ExpiresAt(), in.Config[l.ExpiresAt()])}
	}
	return !now.Before(exp), nil
}

// destroyChecked stops and deletes project/name, calling check before each
// change (an instance being stopped for a while may change hands), then
// proves it is gone. A refusal ends it at once and leaves the instance alone.
func destroyChecked(ctx context.Context, c *incus.Client, project, name string,
	check func(context.Context) (*incus.Instance, error), logf func(string, ...any)) error {
	start := time.Now()
	id := project + "/" + name
	var refused *OwnershipError
	checked := func() (gone bool, err error) {
		_, err = check(ctx)
		if errors.Is(err, incus.ErrNotFound) {
			return true, nil
		}
		if errors.As(err, &refused) {
			return false, wait.Stop(err)
		}
		return false, err
	}
	// Retried: an instance still being created or started refuses to be
	// deleted ("busy") for a moment; only "not found" ends it.
	err := wait.Eventually(ctx, "deletion of "+id, bounds.Destroy, func(bool) error {
		if gone, err := checked(); gone || err != nil {
			return err
		}
		if err := c.SetState(ctx, project, name, "stop", true); err != nil && !errors.Is(err, incus.ErrNotFound) &&
			!strings.Contains(err.Error(), "already stopped") {
			return err
		}
		if gone, err := checked(); gone || err != nil {
			return err
		}
		if err := c.DeleteInstance(ctx, project, name); err != nil && !errors.Is(err, incus.ErrNotFound) {
			if isProtected(err) {
				return wait.Stop(&ProtectedError{Instance: id})
			}
			return err
		}
		return errors.New("instance still answers after delete")
	})
	if refused != nil {
		return refused
	}
	var protected *ProtectedError
	if errors.As(err, &protected) {
		return protected
	}
	if err != nil {
		return fmt.Errorf("destroy %s: %w: there may be a dangling instance", id, err)
	}
	logf("destroyed %s in %s (API: not found)", id, time.Since(start).Round(time.Millisecond))
	return nil
}

// ProtectedError: Incus refused to delete an instance of ours because
// security.protection.delete is set (by a profile: the harness never sets
// it). incusd checks it in the delete operation itself ("Instance is
// protected", internal/server/instance/drivers/driver_{lxc,qemu}.go Delete).
// The harness does not lift a protection the host's operators put there; it
// leaves the instance stopped and names it, with the commands that remove it.
type ProtectedError struct{ Instance string }

func (e *ProtectedError) Error() string {
	project, name, _ := strings.Cut(e.Instance, "/")
	return fmt.Sprintf("destroy %s: Incus refuses: the instance is protected (security.protection.delete=true, from its profile); "+
		"it is stopped and LEFT BEHIND — remove it with: incus config set %s security.protection.delete=false --project %s && incus delete %s --project %s; "+
		"and take the key out of the profile the harness uses", e.Instance, name, project, name, project)
}

func isProtected(err error) bool {
	var oe *incus.OperationError
	return errors.As(err, &oe) && strings.Contains(oe.Message, "Instance is protected")
}
