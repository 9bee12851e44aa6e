package egress

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Recorded from the lab (nft 1.0.6, `nft -j list table`; chains left out):
// a machine that cloned over HTTP and pinged the gateway.
const recorded = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "seen", "table": "ccci_egress_probe", "type": ["ipv4_addr", "inet_service"], "handle": 2, "size": 65536, "elem": [{"concat": ["10.99.0.1", 8418]}, {"concat": ["10.99.0.1", 8420]}]}}, {"set": {"family": "inet", "name": "other", "table": "ccci_egress_probe", "type": ["ipv4_addr", "inet_proto"], "handle": 3, "size": 65536, "elem": [{"concat": ["10.99.0.1", "icmp"]}, {"concat": ["10.99.0.2", 132]}]}}]}`

func TestParseSet(t *testing.T) {
	ds, err := parseSet([]byte(recorded))
	require.NoError(t, err)
	assert.Equal(t, []Dest{{IP: "10.99.0.1", Port: 8418}, {IP: "10.99.0.1", Port: 8420},
		{IP: "10.99.0.1", Proto: "icmp"}, {IP: "10.99.0.2", Proto: "protocol 132"}}, ds)
	assert.Equal(t, "10.99.0.1 (icmp)", ds[2].String())
	assert.Equal(t, "10.99.0.1:8418", ds[0].String())
	empty, err := parseSet([]byte(`{"nftables": [{"set": {"name": "seen"}}]}`))
	require.NoError(t, err)
	assert.Empty(t, empty)
	for _, bad := range []string{`not json`, `{"nftables": [{"set": {"elem": [{"concat": ["not-an-ip", 1]}]}}]}`,
		`{"nftables": [{"set": {"elem": [{"concat": ["10.0.0.1"]}]}}]}`,
		`{"nftables": [{"set": {"name": "seen", "elem": [{"concat": ["10.0.0.1", "icmp"]}]}}]}`,
		`{"nftables": [{"set": {"name": "other", "elem": [{"concat": ["10.0.0.1", ""]}]}}]}`,
		`{"nftables": [{"set": {"name": "other", "elem": [{"concat": ["10.0.0.1", {"x": 1}]}]}}]}`} {
		_, err := parseSet([]byte(bad))
		assert.Error(t, err, bad)
	}
}

func TestAllowedIsTheReposAndTheAllowList(t *testing.T) {
	a, err := AllowedFor(context.Background(), []string{"http://10.99.0.1:8418/good/cc-ci.git", "https://127.0.0.2/s.git"},
		[]string{"10.99.0.1:53"})
	require.NoError(t, err)
	assert.True(t, a[Dest{IP: "10.99.0.1", Port: 8418}])
	assert.True(t, a[Dest{IP: "127.0.0.2", Port: 443}], "the scheme's default port")
	assert.True(t, a[Dest{IP: "10.99.0.1", Port: 53}])
	assert.False(t, a[Dest{IP: "10.99.0.1", Port: 8420}])
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
