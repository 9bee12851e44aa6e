package egress

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Recorded from the lab (nft 1.0.6).
const recorded = `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "seen", "table": "ccci_egress_probe", "type": ["ipv4_addr", "inet_service"], "handle": 3, "size": 4096, "elem": [{"concat": ["10.99.0.1", 8418]}, {"concat": ["10.99.0.1", 8420]}]}}]}`

func TestParseSet(t *testing.T) {
	ds, err := parseSet([]byte(recorded))
	require.NoError(t, err)
	assert.Equal(t, []Dest{{"10.99.0.1", 8418}, {"10.99.0.1", 8420}}, ds)
	empty, err := parseSet([]byte(`{"nftables": [{"set": {"name": "seen"}}]}`))
	require.NoError(t, err)
	assert.Empty(t, empty)
	for _, bad := range []string{`not json`, `{"nftables": [{"set": {"elem": [{"concat": ["not-an-ip", 1]}]}}]}`,
		`{"nftables": [{"set": {"elem": [{"concat": ["10.0.0.1"]}]}}]}`} {
		_, err := parseSet([]byte(bad))
		assert.Error(t, err, bad)
	}
}

func TestAllowedIsTheReposAndTheAllowList(t *testing.T) {
	a, err := AllowedFor(context.Background(), []string{"http://10.99.0.1:8418/good/cc-ci.git", "https://127.0.0.2/s.git"},
		[]string{"10.99.0.1:53"})
	require.NoError(t, err)
	assert.True(t, a[Dest{"10.99.0.1", 8418}])
	assert.True(t, a[Dest{"127.0.0.2", 443}], "the scheme's default port")
	assert.True(t, a[Dest{"10.99.0.1", 53}])
	assert.False(t, a[Dest{"10.99.0.1", 8420}])
	_, err = AllowedFor(context.Background(), []string{"10.99.0.1/x.git"}, nil)
	assert.ErrorContains(t, err, "no scheme")
	_, err = AllowedFor(context.Background(), nil, []string{"cache.example"})
	assert.ErrorContains(t, err, "want host:port")
}

func TestStartRefusesWhatIsNotAnAddressOrARunID(t *testing.T) {
	_, err := Start(context.Background(), "10.99.0.5; flush ruleset", "r1")
	assert.ErrorContains(t, err, "not an IPv4 address")
	_, err = Start(context.Background(), "10.99.0.5", "r1 } table inet incus {")
	assert.ErrorContains(t, err, "no valid table name")
}
