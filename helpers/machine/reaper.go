package machine

import (
	"context"
	"errors"
	"fmt"
	"time"

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
// onlyRun, when set, restricts it to one run id and ignores expiry (the
// guardian's job: this run's own machines after its process died).
func Reap(ctx context.Context, c *incus.Client, g Guardrails, l Labels, now time.Time, onlyRun string, logf func(string, ...any)) (ReapResult, error) {
	var res ReapResult
	var errs []error
	for _, project := range g.AllowedProjects {
		ins, err := c.Instances(ctx, project)
		if err != nil {
			errs = append(errs, fmt.Errorf("reaper: list %s: %w", project, err))
			continue
		}
		for _, in := range ins {
			if in.Config[l.CreatedBy()] != CreatedBy {
				continue
			}
			id := project + "/" + in.Name
			if onlyRun != "" {
				if in.Config[l.RunID()] != onlyRun {
					continue
				}
			} else {
				exp, err := time.Parse(time.RFC3339, in.Config[l.ExpiresAt()])
				if err != nil {
					// A labelled instance with a broken expiry is not ours to judge.
					errs = append(errs, fmt.Errorf("reaper: %s: label %s=%q is not RFC 3339; left alone", id, l.ExpiresAt(), in.Config[l.ExpiresAt()]))
					continue
				}
				if now.Before(exp) {
					res.Kept = append(res.Kept, id)
					continue
				}
			}
			if err := destroy(ctx, c, project, in.Name, logf); err != nil {
				errs = append(errs, err)
				continue
			}
			res.Deleted = append(res.Deleted, id)
		}
	}
	return res, errors.Join(errs...)
}
