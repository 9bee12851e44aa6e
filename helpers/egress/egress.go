// Package egress observes where a machine sends traffic, from the host its
// NICs are plugged into (the lab's bridge), so that "the install needs
// nothing but the two repos" is checked on the machine, not taken from the
// document: nftables, a table of the harness's own per run, with a chain on
// the host side of each of the machine's NICs (its veth or tap device,
// netdev family), attached before the machine starts and read until it is
// torn down. The ingress chain sees every frame the machine sends, before
// routing or bridging decide where it goes; the egress chain sees the
// connections others open to it (the harness's SSH), so that its replies
// are told from connections it starts. Recorded: every TCP segment that is
// not a reply (a SYN, or any other segment of a connection nobody opened to
// the machine: ACK-only, a half-made handshake), every UDP datagram, every
// packet of any other protocol, every fragment, every non-IP frame — IPv4
// and IPv6 alike, whatever its source address and wherever it goes: the
// host, the internet, another instance on the same bridge. What fits no set
// (a set full, a header cut short) is counted, and the count is an error.
// Not a proxy: the target cannot route around it. incusd's own tables are
// never touched.
package egress

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cc-ci/acceptance/helpers/bounds"
)

// Dest is one destination the machine sent to: a TCP or UDP port; (Proto
// set, Port 0) a host reached by another protocol, such as a ping, or by a
// fragment; or (MAC set) a non-IP frame to a link-layer address.
type Dest struct {
	IP    string `json:",omitempty"`
	Port  int    `json:",omitempty"`
	Proto string `json:",omitempty"` // "" for TCP and UDP
	MAC   string `json:",omitempty"`
}

func (d Dest) String() string {
	switch {
	case d.MAC != "":
		return d.MAC + " (" + d.Proto + ")"
	case d.Proto != "":
		return d.IP + " (" + d.Proto + ")"
	}
	return net.JoinHostPort(d.IP, strconv.Itoa(d.Port))
}

// Contact is one destination and when the machine first sent to it: a step
// of the install, or a phase around it (Boot, AfterInstall).
type Contact struct {
	Step string
	Dest Dest
}

// The phases outside the install's steps.
const (
	Boot         = "(from its start, before the install)"
	AfterInstall = "(after the install's last step)"
)

// Observer records what one machine sends.
type Observer struct {
	table string
	mu    sync.Mutex
	seen  map[Dest]bool
	once  sync.Once
	err   error
}

// family is the nftables family of the run's table: netdev, whose ingress
// hook sees every frame a NIC's host side receives, before routing or
// bridging decide where it goes, and whose egress hook sees every frame the
// host sends into it.
const family = "netdev"

// tableName is the run's own table: ccci_egress_<run id>.
var tableName = regexp.MustCompile(`^ccci_egress_[a-z0-9_]{1,48}$`)

// deviceName is a Linux interface name (IFNAMSIZ, no quotes or spaces).
var deviceName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// What a booting system sends on its link by itself, named by protocol and
// port, not by address range (a datagram to the broadcast address or a
// link-scope group on any other port reaches every host on the link, and is
// counted): ARP; DHCP (RFC 2131's client port 68 to 67; DHCPv6's
// All_DHCP_Relay_Agents_and_Servers, RFC 8415); mDNS (RFC 6762) and LLMNR
// (RFC 4795) on their groups and ports; IGMP membership reports to a group
// (IGMP to a host is counted); IPv6 neighbour discovery and MLD. Not counted:
// every booting Linux sends them, and they fetch nothing.
const linkChatter = `ether type arp return
    meta protocol ip udp sport 68 udp dport 67 return
    meta protocol ip6 ip6 daddr ff02::1:2 udp dport 547 return
    meta protocol ip ip daddr 224.0.0.251 udp dport 5353 return
    meta protocol ip6 ip6 daddr ff02::fb udp dport 5353 return
    meta protocol ip ip daddr 224.0.0.252 udp dport 5355 return
    meta protocol ip6 ip6 daddr ff02::1:3 udp dport 5355 return
    meta protocol ip ip daddr 224.0.0.0/4 meta l4proto igmp return
    meta protocol ip6 icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect, mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report } return`

// What the machine sends, each in its set: non-IP frames by link address and
// type; fragments (whose transport header may be cut or absent) by host and
// protocol; a TCP SYN, and any UDP datagram, by host and port; any other TCP
// segment by its four ports, to be judged against the connections opened to
// the machine; any other protocol by host. What fits none is counted.
const recordRules = `meta protocol != { ip, ip6 } update @link { ether daddr . ether type } return
    meta protocol ip ip frag-off & 0x3fff != 0 update @frag4 { ip daddr . meta l4proto } return
    meta protocol ip6 exthdr frag exists update @frag6 { ip6 daddr . meta l4proto } return
    meta protocol ip tcp flags & (syn | ack) == syn update @seen4 { ip daddr . tcp dport } return
    meta protocol ip6 tcp flags & (syn | ack) == syn update @seen6 { ip6 daddr . tcp dport } return
    meta protocol ip meta l4proto tcp update @tcp4 { ip daddr . tcp dport . tcp sport } return
    meta protocol ip6 meta l4proto tcp update @tcp6 { ip6 daddr . tcp dport . tcp sport } return
    meta protocol ip meta l4proto udp update @seen4 { ip daddr . udp dport } return
    meta protocol ip6 meta l4proto udp update @seen6 { ip6 daddr . udp dport } return
    meta protocol ip update @other4 { ip daddr . meta l4proto } return
    meta protocol ip6 update @other6 { ip6 daddr . meta l4proto } return
    counter name "unrecorded"`

// The connections opened to the machine (a SYN going in), by the same four
// ports its replies carry: peer, peer's port, machine's port.
const inboundRules = `meta protocol ip tcp flags & (syn | ack) == syn update @in4 { ip saddr . tcp sport . tcp dport }
    meta protocol ip6 tcp flags & (syn | ack) == syn update @in6 { ip6 saddr . tcp sport . tcp dport }`

var sets = []string{
	"seen4 { type ipv4_addr . inet_service", "seen6 { type ipv6_addr . inet_service",
	"tcp4 { type ipv4_addr . inet_service . inet_service", "tcp6 { type ipv6_addr . inet_service . inet_service",
	"in4 { type ipv4_addr . inet_service . inet_service", "in6 { type ipv6_addr . inet_service . inet_service",
	"other4 { type ipv4_addr . inet_proto", "other6 { type ipv6_addr . inet_proto",
	"frag4 { type ipv4_addr . inet_proto", "frag6 { type ipv6_addr . inet_proto",
	"link { type ether_addr . ether_type",
}

// Start begins recording what the machine sends through its NICs, named by
// their host-side devices (Incus's host_name). A device need not exist yet:
// the chains attach when it appears (Linux 6.x; an older kernel refuses
// the table, and the error says so), which is how recording starts before
// the machine's first frame.
func Start(ctx context.Context, devices []string, runID string) (*Observer, error) {
	if len(devices) == 0 {
		return nil, fmt.Errorf("egress: the machine has no NIC device on the host to observe")
	}
	table, err := tableFor(runID)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n  counter unrecorded { }\n", family, table)
	for _, set := range sets {
		fmt.Fprintf(&b, "  set %s; flags dynamic; size 65536; }\n", set)
	}
	for i, dev := range devices {
		if !deviceName.MatchString(dev) {
			return nil, fmt.Errorf("egress: %q is not a network device name", dev)
		}
		fmt.Fprintf(&b, "  chain out%d {\n    type filter hook ingress device %q priority -10; policy accept;\n    %s\n    %s\n  }\n", i, dev, linkChatter, recordRules)
		fmt.Fprintf(&b, "  chain in%d {\n    type filter hook egress device %q priority -10; policy accept;\n    %s\n  }\n", i, dev, inboundRules)
	}
	b.WriteString("}\n")
	if _, err := nft(ctx, b.String(), "-f", "-"); err != nil {
		return nil, fmt.Errorf("egress: create table %s on %v: %w", table, devices, err)
	}
	return &Observer{table: table, seen: map[Dest]bool{}}, nil
}

// New returns the destinations recorded since the last call, sorted.
func (o *Observer) New(ctx context.Context) ([]Dest, error) {
	out, err := nft(ctx, "", "-j", "list", "table", family, o.table)
	if err != nil {
		return nil, fmt.Errorf("egress: read table %s: %w", o.table, err)
	}
	all, err := parseTable(out)
	if err != nil {
		return nil, fmt.Errorf("egress: table %s: %w", o.table, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var fresh []Dest
	for _, d := range all {
		if !o.seen[d] {
			o.seen[d] = true
			fresh = append(fresh, d)
		}
	}
	sort.Slice(fresh, func(i, j int) bool { return fresh[i].String() < fresh[j].String() })
	return fresh, nil
}

// Close deletes the run's table (and only it), once; later calls return
// the first call's result.
func (o *Observer) Close() error {
	o.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), bounds.Kill)
		defer cancel()
		if _, err := nft(ctx, "", "delete", "table", family, o.table); err != nil {
			o.err = fmt.Errorf("egress: delete table %s: %w", o.table, err)
		}
	})
	return o.err
}

// Drop deletes the table of a run whose process died before it could (the
// guardian's job); a table that is not there is fine.
func Drop(ctx context.Context, runID string) error {
	table, err := tableFor(runID)
	if err != nil {
		return err
	}
	if _, err := nft(ctx, "", "list", "table", family, table); err != nil {
		return nil
	}
	if _, err := nft(ctx, "", "delete", "table", family, table); err != nil {
		return fmt.Errorf("egress: delete table %s: %w", table, err)
	}
	return nil
}

// Exists reports whether the run's table is there (for the harness's own tests).
func Exists(ctx context.Context, runID string) bool {
	table, err := tableFor(runID)
	if err != nil {
		return false
	}
	_, err = nft(ctx, "", "list", "table", family, table)
	return err == nil
}

// tableFor is the run's own table: ccci_egress_<run id>.
func tableFor(runID string) (string, error) {
	table := "ccci_egress_" + strings.NewReplacer("-", "_").Replace(strings.ToLower(runID))
	if !tableName.MatchString(table) {
		return "", fmt.Errorf("egress: run id %q makes no valid table name", runID)
	}
	return table, nil
}

// parseTable reads `nft -j list table`: what each set holds (see Start),
// the TCP segments that answer a connection opened to the machine taken
// out, and the unrecorded counter, which must be zero.
func parseTable(b []byte) ([]Dest, error) {
	var doc struct {
		Nftables []struct {
			Set *struct {
				Name string `json:"name"`
				Elem []struct {
					Concat []json.RawMessage `json:"concat"`
				} `json:"elem"`
			} `json:"set"`
			Counter *struct {
				Name    string `json:"name"`
				Packets int64  `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("nft's JSON: %w", err)
	}
	var out []Dest
	segments, inbound := map[string]Dest{}, map[string]bool{}
	for _, item := range doc.Nftables {
		if c := item.Counter; c != nil && c.Name == "unrecorded" && c.Packets > 0 {
			return nil, fmt.Errorf("%d frame(s) the machine sent fit no set (a set is full, or a header was cut short): what they reached is unknown", c.Packets)
		}
		if item.Set == nil {
			continue
		}
		name := item.Set.Name
		for _, e := range item.Set.Elem {
			d, key, err := element(name, e.Concat)
			if err != nil {
				return nil, fmt.Errorf("set %s: unexpected element %s: %w", name, e.Concat, err)
			}
			switch {
			case strings.HasPrefix(name, "in"):
				inbound[key] = true
			case strings.HasPrefix(name, "tcp"):
				segments[key] = d
			default:
				out = append(out, d)
			}
		}
	}
	for key, d := range segments {
		if !inbound[key] {
			out = append(out, d) // no connection was opened to the machine on these ports: it started this one
		}
	}
	return out, nil
}

// element reads one set element: [address, port or protocol (, port)], or
// for link, [MAC, ether type]. key is the element as written, for matching
// a segment to the connection it answers.
func element(set string, concat []json.RawMessage) (Dest, string, error) {
	var d Dest
	width := map[bool]int{true: 3, false: 2}[strings.HasPrefix(set, "in") || strings.HasPrefix(set, "tcp")]
	if len(concat) != width {
		return d, "", fmt.Errorf("%d fields, want %d", len(concat), width)
	}
	var addr string
	if err := json.Unmarshal(concat[0], &addr); err != nil {
		return d, "", err
	}
	key := addr
	for _, f := range concat[1:] {
		key += "|" + string(f)
	}
	if set == "link" {
		mac, err := net.ParseMAC(addr)
		if err != nil {
			return d, "", err
		}
		d.MAC, d.Proto = mac.String(), "ethertype "+protoName(concat[1], "0x%04x")
		return d, key, nil
	}
	if net.ParseIP(addr) == nil {
		return d, "", fmt.Errorf("%q is not an address", addr)
	}
	d.IP = addr
	switch {
	case strings.HasPrefix(set, "other"), strings.HasPrefix(set, "frag"):
		d.Proto = protoName(concat[1], "protocol %d")
		if d.Proto == "" {
			return d, "", fmt.Errorf("no protocol")
		}
		if strings.HasPrefix(set, "frag") {
			d.Proto += ", fragmented"
		}
	default:
		if err := json.Unmarshal(concat[1], &d.Port); err != nil {
			return d, "", err
		}
	}
	return d, key, nil
}

// protoName is a protocol as nft prints it: by name, or by number when it
// has none (formatted with numeric).
func protoName(raw json.RawMessage, numeric string) string {
	var name string
	if json.Unmarshal(raw, &name) == nil {
		return name
	}
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return fmt.Sprintf(numeric, n)
	}
	return ""
}

func nft(ctx context.Context, stdin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "nft", args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// Allowed is what the machine may reach: the two repos' hosts (by address)
// and the allow-list (host:port, e.g. a binary cache or the resolver).
type Allowed map[Dest]bool

// AllowedFor resolves the repos' URLs and the allow-list into addresses.
func AllowedFor(ctx context.Context, repoURLs, allow []string) (Allowed, error) {
	a := Allowed{}
	add := func(host, port, what string) error {
		p, err := strconv.Atoi(port)
		if err != nil {
			return fmt.Errorf("egress: %s: port %q", what, port)
		}
		ips, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			return fmt.Errorf("egress: %s: resolve %s: %w", what, host, err)
		}
		for _, ip := range ips {
			a[Dest{IP: ip, Port: p}] = true
		}
		return nil
	}
	for _, u := range repoURLs {
		host, port, err := hostPort(u)
		if err != nil {
			return nil, err
		}
		if err := add(host, port, u); err != nil {
			return nil, err
		}
	}
	for _, hp := range allow {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			return nil, fmt.Errorf("egress: CCCI_EGRESS_ALLOW entry %q: want host:port", hp)
		}
		if err := add(host, port, hp); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// hostPort is the host and port a git URL connects to.
func hostPort(raw string) (string, string, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "", "", fmt.Errorf("egress: repo URL %q has no scheme", raw)
	}
	hostport, _, _ := strings.Cut(rest, "/")
	if at := strings.LastIndex(hostport, "@"); at >= 0 {
		hostport = hostport[at+1:]
	}
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return h, p, nil
	}
	def := map[string]string{"http": "80", "https": "443", "ssh": "22", "git": "9418"}[scheme]
	if def == "" {
		return "", "", fmt.Errorf("egress: repo URL %q: no default port for %s", raw, scheme)
	}
	return hostport, def, nil
}
