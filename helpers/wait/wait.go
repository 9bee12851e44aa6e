// Package wait is the harness's one polling primitive: try a condition with
// backoff until it holds, the timeout passes or the context ends. The last
// try is flagged so the condition can log the state it saw, and a timeout
// carries the last error, so a timeout explains itself.
package wait

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Fatal wraps an error that makes further tries pointless (a unit reached
// "failed", an instance was deleted): Eventually returns it at once.
type Fatal struct{ Err error }

func (f Fatal) Error() string { return f.Err.Error() }
func (f Fatal) Unwrap() error { return f.Err }

// Stop marks err as fatal for Eventually.
func Stop(err error) error { return Fatal{Err: err} }

// TimeoutError says what was awaited, for how long, and what the last try saw.
type TimeoutError struct {
	What      string
	Timeout   time.Duration
	Tries     int
	Last      error
	ByContext bool // the caller's context ended the wait before the timeout would have
}

func (e *TimeoutError) Error() string {
	by := ""
	if e.ByContext {
		by = ", the caller's deadline"
	}
	return fmt.Sprintf("timed out after %s (%d tries%s) waiting for %s: last try: %v", e.Timeout.Round(time.Millisecond), e.Tries, by, e.What, e.Last)
}

// Unwrap gives the last try's error and, when the caller's deadline ended
// the wait, context.DeadlineExceeded.
func (e *TimeoutError) Unwrap() []error {
	if e.ByContext {
		return []error{e.Last, context.DeadlineExceeded}
	}
	return []error{e.Last}
}

// Options tune the backoff. Zero values mean 200ms first interval, 5s max.
type Options struct {
	Interval    time.Duration
	MaxInterval time.Duration
	Log         func(format string, args ...any) // each failed try, if set
}

// Eventually calls cond until it returns nil. cond's argument is true on the
// last try (the deadline is near), when it should gather diagnostics into
// the error it returns.
func Eventually(ctx context.Context, what string, timeout time.Duration, cond func(lastTry bool) error) error {
	return EventuallyWith(ctx, what, timeout, Options{}, cond)
}

// EventuallyWith is Eventually with tuned backoff.
func EventuallyWith(ctx context.Context, what string, timeout time.Duration, o Options, cond func(lastTry bool) error) error {
	if o.Interval <= 0 {
		o.Interval = 200 * time.Millisecond
	}
	if o.MaxInterval <= 0 {
		o.MaxInterval = 5 * time.Second
	}
	deadline := time.Now().Add(timeout)
	byCtx := false
	// A context that ends first bounds the wait, a little before its end:
	// the last try (the one that gathers diagnostics) still happens.
	if d, ok := ctx.Deadline(); ok {
		if early := d.Add(-min(time.Second, time.Until(d)/10)); early.Before(deadline) {
			deadline, byCtx = early, true
			timeout = max(time.Until(early), 0)
		}
	}
	interval := o.Interval
	var last error
	for tries := 1; ; tries++ {
		lastTry := time.Until(deadline) <= interval
		err := cond(lastTry)
		if err == nil {
			return nil
		}
		var fatal Fatal
		if errors.As(err, &fatal) {
			return fmt.Errorf("%s: %w", what, fatal.Err)
		}
		last = err
		if o.Log != nil {
			o.Log("%s: try %d: %v", what, tries, err)
		}
		if lastTry {
			return &TimeoutError{What: what, Timeout: timeout, Tries: tries, Last: last, ByContext: byCtx}
		}
		sleep := min(interval, time.Until(deadline))
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last try: %v)", what, ctx.Err(), last)
		case <-time.After(sleep):
		}
		interval = min(interval*2, o.MaxInterval)
	}
}
