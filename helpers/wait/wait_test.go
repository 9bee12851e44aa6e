package wait

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEventuallySucceedsAfterRetries(t *testing.T) {
	n := 0
	err := Eventually(context.Background(), "third try", 5*time.Second, func(bool) error {
		n++
		if n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 3, n)
}

func TestEventuallyTimeoutCarriesLastErrorAndFlagsLastTry(t *testing.T) {
	sawLast := false
	err := EventuallyWith(context.Background(), "never", 300*time.Millisecond, Options{Interval: 50 * time.Millisecond},
		func(last bool) error {
			if last {
				sawLast = true
				return errors.New("diagnostics: unit is activating")
			}
			return errors.New("nope")
		})
	var te *TimeoutError
	require.ErrorAs(t, err, &te)
	assert.True(t, sawLast, "the condition must be told about its last try")
	assert.Contains(t, err.Error(), "waiting for never")
	assert.Contains(t, err.Error(), "diagnostics: unit is activating")
}

func TestEventuallyStopsAtOnceOnFatal(t *testing.T) {
	start := time.Now()
	n := 0
	err := Eventually(context.Background(), "unit", time.Minute, func(bool) error {
		n++
		return Stop(errors.New("unit entered failed"))
	})
	require.Error(t, err)
	assert.Equal(t, 1, n)
	assert.Less(t, time.Since(start), time.Second)
	assert.Contains(t, err.Error(), "unit entered failed")
}

func TestEventuallyHonoursContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := Eventually(ctx, "ctx", time.Minute, func(bool) error { return errors.New("no") })
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// A caller's deadline shorter than the wait's own timeout still gets the
// last try, whose diagnostics explain the timeout.
func TestEventuallyGivesTheLastTryBeforeTheCallersDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	sawLast := false
	err := Eventually(ctx, "ctx", time.Minute, func(last bool) error {
		if last {
			sawLast = true
			return errors.New("diagnostics of the last try")
		}
		return errors.New("no")
	})
	assert.True(t, sawLast, "the condition was told it was on its last try")
	var te *TimeoutError
	require.ErrorAs(t, err, &te)
	assert.True(t, te.ByContext)
	assert.ErrorContains(t, err, "the caller's deadline")
	assert.ErrorContains(t, err, "diagnostics of the last try")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}
