package tlscheck

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/tlscheck/tlstest"
)

var cert = tlstest.Cert

// Each bad certificate is refused with an error that names what is wrong.
func TestCertProblemsNameTheCause(t *testing.T) {
	now := time.Now()
	good, goodKey := cert(t, []string{"*.ci.lab.test"}, now.Add(-time.Hour), now.AddDate(0, 0, 90))
	_, otherKey := cert(t, []string{"*.ci.lab.test"}, now.Add(-time.Hour), now.AddDate(0, 0, 90))
	expired, expiredKey := cert(t, []string{"*.ci.lab.test"}, now.AddDate(0, -4, 0), now.AddDate(0, 0, -1))
	soon, soonKey := cert(t, []string{"*.ci.lab.test"}, now.Add(-time.Hour), now.AddDate(0, 0, 3))
	wrongSAN, wrongSANKey := cert(t, []string{"*.example.org"}, now.Add(-time.Hour), now.AddDate(0, 0, 90))
	future, futureKey := cert(t, []string{"*.ci.lab.test"}, now.AddDate(0, 0, 1), now.AddDate(0, 0, 90))

	assert.Empty(t, CertProblems(good, goodKey, "ci.lab.test", 14, now))
	cases := []struct {
		name       string
		chain, key []byte
		want       string
	}{
		{"key does not match", good, otherKey, "the key does not match the certificate"},
		{"expired", expired, expiredKey, "expired on"},
		{"expires too soon", soon, soonKey, "fewer than 14"},
		{"SAN does not cover the domain", wrongSAN, wrongSANKey, "do not cover *.ci.lab.test"},
		{"not yet valid", future, futureKey, "not valid before"},
		{"not a certificate", []byte("garbage"), goodKey, "the certificate chain: no PEM certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			probs := CertProblems(tc.chain, tc.key, "ci.lab.test", 14, now)
			require.NotEmpty(t, probs)
			assert.Contains(t, fmt.Sprint(probs), tc.want)
		})
	}
}

// The pair is found by what the secrets are, whatever they are called.
func TestPairIsFoundByContent(t *testing.T) {
	now := time.Now()
	chain, key := cert(t, []string{"*.ci.lab.test"}, now.Add(-time.Hour), now.AddDate(0, 0, 90))
	_, otherKey := cert(t, []string{"*.ci.lab.test"}, now.Add(-time.Hour), now.AddDate(0, 0, 90))
	other, _ := cert(t, []string{"*.example.org"}, now.Add(-time.Hour), now.AddDate(0, 0, 90))
	c, k, ok := Pair(map[string]string{"wildcard/cert": string(chain), "wildcard/key": string(key), "spare_key": string(otherKey),
		"registry": string(other), "token": "abc"}, "ci.lab.test")
	require.True(t, ok)
	assert.Equal(t, "wildcard/cert", c)
	assert.Equal(t, "wildcard/key", k)
	_, _, ok = Pair(map[string]string{"cert": string(chain), "key": string(otherKey)}, "ci.lab.test")
	assert.False(t, ok, "a key that is not the certificate's")
	c, _, ok = Pair(map[string]string{"other": string(other), "cert": string(chain), "key": string(key)}, "ci.lab.test")
	assert.True(t, ok)
	assert.Equal(t, "cert", c, "the one for the domain first")
}
