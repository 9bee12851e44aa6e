package testrun

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The record is the evidence as the tests make it: what each test did, the
// facts noted, and an interruption that turns any outcome into a fail.
func TestTheRecordIsWhatTheTestsDid(t *testing.T) {
	var rec record
	t.Run("passes", func(t *testing.T) { rec.track(t) })
	t.Run("skips", func(t *testing.T) { rec.track(t); t.Skip("cannot judge: on purpose") })
	rec.note("fingerprint", "SHA256:abc")

	e := rec.entry("r1", "pass")
	assert.Equal(t, "pass", e.Outcome)
	assert.Equal(t, map[string]string{"fingerprint": "SHA256:abc"}, e.Facts)
	results := map[string]string{}
	for _, tt := range e.Tests {
		results[tt.Name] = tt.Result
	}
	assert.Equal(t, map[string]string{t.Name() + "/passes": "pass", t.Name() + "/skips": "skip"}, results)

	rec.note("later", "x")
	assert.NotContains(t, e.Facts, "later", "an entry is a copy: a note after it does not change it")

	rec.interrupt("interrupted by terminated")
	rec.interrupt("the -timeout deadline")
	e = rec.entry("r1", "pass")
	assert.Equal(t, "fail", e.Outcome, "an interrupted run does not pass, whatever its tests did")
	assert.Equal(t, "interrupted by terminated", e.Interrupted, "the first reason is the one recorded")
	assert.Equal(t, "interrupted by terminated", rec.interruptedBy())
}

// The entry is written once, whoever asks first; every caller gets its error.
func TestTheEvidenceIsWrittenOnce(t *testing.T) {
	var rec record
	writes := 0
	write := func() error { writes++; return assert.AnError }
	require.ErrorIs(t, rec.writeOnce(write), assert.AnError)
	require.ErrorIs(t, rec.writeOnce(write), assert.AnError, "a later caller sees the first write's error")
	assert.Equal(t, 1, writes)
}
