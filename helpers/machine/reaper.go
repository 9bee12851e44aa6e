package machine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
)

// ReapResult says what the reaper did and why it left the rest alone.
type ReapResult struct {
	Deleted []string // project/name
	Kept    []string // labelled, not expired (a concurrent run)
}

// Reap deletes instances in the allowed projects that carry the harness's
// created-by label and whose expires-at has passed. An instance without the
// label is never touched, whatever its name; nor is one in another project.
// The claim is checked again right before each change.
func Reap(ctx context.Context, c *incus.Client, g config.Guardrails, l Labels, now time.Time, logf func(string, ...any)) (ReapResult, error) {
	var res ReapResult
	var errs []error
	for _, project := range g.AllowedProjects {
		ins, err := c.Instances(ctx, project)
		if err != nil {
			errs = append(errs, fmt.Errorf("reaper: list %s: %w", project, err))
			continue
		}
		for _, in := range ins {
			if !l.Marked(&in) {
				continue
			}
			id := project + "/" + in.Name
			if done, err := expired(&in, l, now); err != nil {
				errs = append(errs, fmt.Errorf("reaper: %w", err))
				continue
			} else if !done {
				res.Kept = append(res.Kept, id)
				continue
			}
			uuid := in.Config[UUIDKey]
			err := destroyChecked(ctx, c, project, in.Name, func(ctx context.Context) (*incus.Instance, error) {
				if err := checkProject(g, project); err != nil {
					return nil, &OwnershipError{Instance: id, Why: err.Error()}
				}
				now, err := c.Instance(ctx, project, in.Name)
				if err != nil {
					return nil, err
				}
				if now.Config[UUIDKey] != uuid {
					return nil, &OwnershipError{Instance: id, Why: "its uuid changed since it was listed"}
				}
				if done, err := expired(now, l, time.Now()); err != nil || !done {
					return nil, errors.Join(&OwnershipError{Instance: id, Why: "no longer an expired harness instance"}, err)
				}
				return now, nil
			}, logf)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			res.Deleted = append(res.Deleted, id)
		}
	}
	return res, errors.Join(errs...)
}
