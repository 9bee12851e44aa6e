package labclaim_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/labclaim"
)

func client(t *testing.T, f *fakeIncus) *incus.Client {
	c, err := incus.New(incus.Config{Socket: f.Socket})
	require.NoError(t, err)
	return c
}

func TestAnEmptyIncusIsClaimedAndMarked(t *testing.T) {
	f := newFakeIncus(t)
	r, err := labclaim.Claim(context.Background(), client(t, f), nil)
	require.NoError(t, err)
	assert.True(t, r.Marked)
	assert.Equal(t, labclaim.MarkerValue, f.config[labclaim.MarkerKey])
	assert.Equal(t, []string{"PATCH /1.0"}, f.changes(), "the marker is the one change")
}

func TestAMarkedIncusIsAcceptedUnchanged(t *testing.T) {
	f := aRealHost(t)
	f.config[labclaim.MarkerKey] = labclaim.MarkerValue
	_, err := labclaim.Claim(context.Background(), client(t, f), nil)
	require.NoError(t, err)
	assert.Empty(t, f.changes())
	assert.NoError(t, labclaim.Require(context.Background(), client(t, f)))
}

// A production Incus is refused, naming what was found, with no change made.
func TestARealHostIsRefusedUntouched(t *testing.T) {
	f := aRealHost(t)
	_, err := labclaim.Claim(context.Background(), client(t, f), []byte("some other certificate"))
	var nl *labclaim.NotTheLabError
	require.ErrorAs(t, err, &nl)
	for _, want := range []string{"instance terraform-ci/cc-nix-test", "core.https_address=[::]:8443", "project terraform-ci",
		"storage pool default", "managed network incusbr0", "CCCI_CONFIG"} {
		assert.Contains(t, err.Error(), want)
	}
	assert.Empty(t, f.changes(), "nothing was changed")
	assert.ErrorAs(t, labclaim.Require(context.Background(), client(t, f)), &nl, "lab tests refuse it too")
}

// An Incus an earlier lab set up (before the marker) trusts the lab's own
// client certificate: that, and only that, proves it is the lab's.
func TestAnEarlierLabIsRecognisedByItsOwnClientCertificate(t *testing.T) {
	f := aRealHost(t)
	der := []byte("the lab's client certificate, DER")
	sum := sha256.Sum256(der)
	f.certs = []map[string]any{{"name": "cc-ci-harness", "fingerprint": hex.EncodeToString(sum[:])}}
	r, err := labclaim.Claim(context.Background(), client(t, f), der)
	require.NoError(t, err)
	assert.True(t, r.Marked)
	assert.Equal(t, []string{"PATCH /1.0"}, f.changes())
}
