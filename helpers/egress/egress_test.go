package egress

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Recorded from the lab (nft 1.0.6, `nft -j list table`; chains left out):
// a machine that cloned over HTTP and pinged the gateway.
const recorded = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"set": {"family": "inet", "name": "seen4", "table": "ccci_egress_probe", "type": ["ipv4_addr", "inet_service"], "handle": 2, "size": 65536, "elem": [{"concat": ["10.99.0.1", 8418]}, {"concat": ["10.99.0.1", 8420]}]}}, {"set": {"family": "inet", "name": "other4", "table": "ccci_egress_probe", "type": ["ipv4_addr", "inet_proto"], "handle": 3, "size": 65536, "elem": [{"concat": ["10.99.0.1", "icmp"]}, {"concat": ["10.99.0.2", 132]}]}}, {"set": {"family": "netdev", "name": "seen6", "table": "ccci_egress_probe", "type": ["ipv6_addr", "inet_service"], "handle": 4, "size": 65536, "elem": [{"concat": ["fe80::1", 8418]}]}}]}`

func TestParseSet(t *testing.T) {
	ds, err := parseTable([]byte(recorded))
	require.NoError(t, err)
	assert.Equal(t, []Dest{{IP: "10.99.0.1", Port: 8418}, {IP: "10.99.0.1", Port: 8420},
		{IP: "10.99.0.1", Proto: "icmp"}, {IP: "10.99.0.2", Proto: "protocol 132"}, {IP: "fe80::1", Port: 8418}}, ds)
	assert.Equal(t, "[fe80::1]:8418", ds[4].String())
	assert.Equal(t, "10.99.0.1 (icmp)", ds[2].String())
	assert.Equal(t, "10.99.0.1:8418", ds[0].String())
	empty, err := parseTable([]byte(`{"nftables": [{"set": {"name": "seen"}}]}`))
	require.NoError(t, err)
	assert.Empty(t, empty)
	for _, bad := range []string{`not json`, `{"nftables": [{"set": {"elem": [{"concat": ["not-an-ip", 1]}]}}]}`,
		`{"nftables": [{"set": {"elem": [{"concat": ["10.0.0.1"]}]}}]}`,
		`{"nftables": [{"set": {"name": "seen4", "elem": [{"concat": ["10.0.0.1", "icmp"]}]}}]}`,
		`{"nftables": [{"set": {"name": "other4", "elem": [{"concat": ["10.0.0.1", ""]}]}}]}`,
		`{"nftables": [{"set": {"name": "other6", "elem": [{"concat": ["::1", {"x": 1}]}]}}]}`} {
		_, err := parseTable([]byte(bad))
		assert.Error(t, err, bad)
	}
}

// Recorded from a veth in a namespace (nft 1.0.6, kernel 6.18): the peer
// fetched a page from the host (SYN to 18080, then its segments), the host
// fetched one from the peer (SYN in to 18081: the peer's replies are not a
// contact), an ACK-only segment to 9999 that no handshake began, a
// fragment with MF set, and a raw frame of EtherType 0x88b5 to broadcast.
const recordedSegments = `{"nftables": [{"counter": {"family": "netdev", "name": "unrecorded", "table": "t", "handle": 3, "packets": 0, "bytes": 0}},
{"set": {"name": "seen4", "elem": [{"concat": ["10.250.0.1", 18080]}]}},
{"set": {"name": "tcp4", "elem": [{"concat": ["10.250.0.1", 9999, 4444]}, {"concat": ["10.250.0.1", 56944, 18081]}, {"concat": ["10.250.0.1", 18080, 33976]}]}},
{"set": {"name": "in4", "elem": [{"concat": ["10.250.0.1", 56944, 18081]}]}},
{"set": {"name": "frag4", "elem": [{"concat": ["10.250.0.1", "tcp"]}]}},
{"set": {"name": "link", "elem": [{"concat": ["ff:ff:ff:ff:ff:ff", 34997]}]}}]}`

// Every frame the machine sends is a contact except the replies to a
// connection opened to it: an ACK-only segment, a fragment and a non-IP
// frame are; a frame that fit no set fails the reading, saying how many.
func TestSegmentsFragmentsAndFramesAreContacts(t *testing.T) {
	ds, err := parseTable([]byte(recordedSegments))
	require.NoError(t, err)
	var got []string
	for _, d := range ds {
		got = append(got, d.String())
	}
	assert.ElementsMatch(t, []string{"10.250.0.1:18080", "10.250.0.1:9999", "10.250.0.1:18080", "10.250.0.1 (tcp, fragmented)",
		"ff:ff:ff:ff:ff:ff (ethertype 0x88b5)"}, got)
	cut := strings.Replace(recordedSegments, `"packets": 0`, `"packets": 2`, 1)
	_, err = parseTable([]byte(cut))
	assert.ErrorContains(t, err, "2 frame(s) the machine sent fit no set")
	for _, bad := range []string{`{"nftables": [{"set": {"name": "tcp4", "elem": [{"concat": ["10.0.0.1", 1]}]}}]}`,
		`{"nftables": [{"set": {"name": "link", "elem": [{"concat": ["not-a-mac", 1]}]}}]}`,
		`{"nftables": [{"set": {"name": "frag6", "elem": [{"concat": ["::1", null]}]}}]}`} {
		_, err := parseTable([]byte(bad))
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

func TestStartRefusesWhatIsNotADeviceOrARunID(t *testing.T) {
	_, err := Start(context.Background(), []string{`veth0" ; flush ruleset`}, "r1")
	assert.ErrorContains(t, err, "not a network device name")
	_, err = Start(context.Background(), nil, "r1")
	assert.ErrorContains(t, err, "no NIC device")
	_, err = Start(context.Background(), []string{"veth0"}, "r1 } table inet incus {")
	assert.ErrorContains(t, err, "no valid table name")
}
