// Package egress observes where a machine sends traffic, from the host its
// NICs are plugged into (the lab's bridge), so that "the install needs
// nothing but the two repos" is checked on the machine, not taken from the
// document: nftables, a table of the harness's own per run, with an
// ingress chain on the host side of each of the machine's NICs (its veth or
// tap device, netdev family) that fills dynamic sets with what the machine
// starts: every TCP connection (a SYN), every UDP datagram, and every
// packet of any other protocol, IPv4 and IPv6 alike, whatever its source
// address and wherever it goes — the host, the internet, another instance on
// the same bridge. Not a proxy: the target cannot route around it. incusd's
// own tables are never touched.
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

// Dest is one destination the machine sent to: a TCP or UDP port, or
// (Proto set, Port 0) a host reached by another protocol, such as a ping.
type Dest struct {
	IP    string
	Port  int
	Proto string // "" for TCP and UDP
}

func (d Dest) String() string {
	if d.Proto != "" {
		return d.IP + " (" + d.Proto + ")"
	}
	return net.JoinHostPort(d.IP, strconv.Itoa(d.Port))
}

// Observer records what one machine sends.
type Observer struct {
	table string
	seen  map[Dest]bool
	once  sync.Once
	err   error
}

// family is the nftables family of the run's table: netdev, whose ingress
// hook sees every frame a NIC's host side receives, before routing or
// bridging decide where it goes.
const family = "netdev"

// tableName is the run's own table: ccci_egress_<run id>.
var tableName = regexp.MustCompile(`^ccci_egress_[a-z0-9_]{1,48}$`)

// deviceName is a Linux interface name (IFNAMSIZ, no quotes or spaces).
var deviceName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// What a booting system sends on its link by itself, and that reaches no
// host: link-scope multicast (RFC 5771's 224.0.0.0/24, ff02::/16), the
// limited broadcast, IGMP membership reports (to a multicast group; IGMP to
// a host is counted), and IPv6 neighbour discovery and MLD. Not counted.
const linkChatter = `ip daddr { 224.0.0.0/24, 255.255.255.255 } return
    ip6 daddr ff02::/16 return
    ip daddr 224.0.0.0/4 meta l4proto igmp return
    icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect, mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report } return`

// What the machine starts: a TCP connection (SYN without ACK: not a reply
// to a connection made to it), a UDP datagram, any other protocol by host.
const recordRules = `meta protocol ip meta l4proto tcp tcp flags & (syn | ack) == syn update @seen4 { ip daddr . tcp dport } return
    meta protocol ip6 meta l4proto tcp tcp flags & (syn | ack) == syn update @seen6 { ip6 daddr . tcp dport } return
    meta l4proto tcp return
    meta protocol ip meta l4proto udp update @seen4 { ip daddr . udp dport } return
    meta protocol ip6 meta l4proto udp update @seen6 { ip6 daddr . udp dport } return
    meta protocol ip update @other4 { ip daddr . meta l4proto } return
    meta protocol ip6 update @other6 { ip6 daddr . meta l4proto } return`

// Start begins recording what the machine sends through its NICs, named by
// their host-side devices (Incus's volatile.<nic>.host_name).
func Start(ctx context.Context, devices []string, runID string) (*Observer, error) {
	if len(devices) == 0 {
		return nil, fmt.Errorf("egress: the machine has no NIC device on the host to observe")
	}
	table, err := tableFor(runID)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", family, table)
	for _, set := range []string{"seen4 { type ipv4_addr . inet_service", "seen6 { type ipv6_addr . inet_service",
		"other4 { type ipv4_addr . inet_proto", "other6 { type ipv6_addr . inet_proto"} {
		fmt.Fprintf(&b, "  set %s; flags dynamic; size 65536; }\n", set)
	}
	for i, dev := range devices {
		if !deviceName.MatchString(dev) {
			return nil, fmt.Errorf("egress: %q is not a network device name", dev)
		}
		fmt.Fprintf(&b, "  chain nic%d { type filter hook ingress device %q priority -10; policy accept;\n    %s\n    %s\n  }\n",
			i, dev, linkChatter, recordRules)
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
	all, err := parseSet(out)
	if err != nil {
		return nil, fmt.Errorf("egress: table %s: %w", o.table, err)
	}
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

// parseSet reads the sets of `nft -j list table`: seen4's and seen6's
// elements are {"concat": [ip, port]}, other4's and other6's {"concat": [ip,
// protocol]}, the protocol by name ("icmp") or, when nft has none, by number.
func parseSet(b []byte) ([]Dest, error) {
	var doc struct {
		Nftables []struct {
			Set *struct {
				Name string `json:"name"`
				Elem []struct {
					Concat []json.RawMessage `json:"concat"`
				} `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("nft's JSON: %w", err)
	}
	var out []Dest
	for _, item := range doc.Nftables {
		if item.Set == nil {
			continue
		}
		for _, e := range item.Set.Elem {
			var d Dest
			if len(e.Concat) != 2 || json.Unmarshal(e.Concat[0], &d.IP) != nil || net.ParseIP(d.IP) == nil {
				return nil, fmt.Errorf("set %s: unexpected element %s", item.Set.Name, e.Concat)
			}
			second := e.Concat[1]
			var err error
			other := strings.HasPrefix(item.Set.Name, "other")
			switch {
			case other:
				if err = json.Unmarshal(second, &d.Proto); err != nil {
					var n int
					if err = json.Unmarshal(second, &n); err == nil {
						d.Proto = "protocol " + strconv.Itoa(n)
					}
				}
			default:
				err = json.Unmarshal(second, &d.Port)
			}
			if err != nil || (d.Proto == "" && other) {
				return nil, fmt.Errorf("set %s: unexpected element %s", item.Set.Name, e.Concat)
			}
			out = append(out, d)
		}
	}
	return out, nil
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
