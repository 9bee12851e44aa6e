// Package egress observes where a machine opens connections, from the host
// its traffic passes through (the lab's bridge), so that "the install needs
// nothing but the two repos" is checked on the machine, not taken from the
// document: nftables, a table of the harness's own per run with a dynamic
// set that the packet path fills with every new connection's destination
// (forward hook: traffic leaving through the host; input hook: traffic to the
// host itself, where the lab's git server listens). Not a proxy: the target
// cannot route around it. incusd's own `inet incus` table is never touched.
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
	"time"
)

// Dest is one destination the machine opened a connection to: a TCP or
// UDP port, or (Proto set, Port 0) a host reached by another protocol, such
// as a ping.
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

// Observer records one machine's new outbound connections.
type Observer struct {
	table string
	seen  map[Dest]bool
	once  sync.Once
	err   error
}

// linkOnly are destinations that never leave the link (RFC 5771's Local
// Network Control Block, the limited broadcast).
var linkOnly = []string{"224.0.0.0/24", "255.255.255.255"}

// tableName is the run's own table: ccci_egress_<run id>.
var tableName = regexp.MustCompile(`^ccci_egress_[a-z0-9_]{1,48}$`)

// Start begins recording the connections that machineIP opens.
func Start(ctx context.Context, machineIP, runID string) (*Observer, error) {
	ip := net.ParseIP(machineIP).To4()
	if ip == nil {
		return nil, fmt.Errorf("egress: %q is not an IPv4 address", machineIP)
	}
	table, err := tableFor(runID)
	if err != nil {
		return nil, err
	}
	// A contact is a new flow to a host: TCP and UDP by port (set seen), any
	// other protocol, a ping say, by host (set other). The link's own chatter
	// — LLMNR/mDNS to 224.0.0.0/24, IGMP, broadcasts — that a booting system
	// sends by itself reaches no host and is not the install's doing.
	match := fmt.Sprintf("ip saddr %s ip daddr != { %s } ct state new", ip, strings.Join(linkOnly, ", "))
	rules := "meta l4proto { tcp, udp } " + match + " update @seen { ip daddr . th dport }; " +
		"meta l4proto != { tcp, udp, igmp } " + match + " update @other { ip daddr . meta l4proto }"
	script := "table inet " + table + " {\n" +
		"  set seen { type ipv4_addr . inet_service; flags dynamic; size 65536; }\n" +
		"  set other { type ipv4_addr . inet_proto; flags dynamic; size 65536; }\n" +
		"  chain through_host { type filter hook forward priority -10; policy accept; " + rules + "; }\n" +
		"  chain to_host { type filter hook input priority -10; policy accept; " + rules + "; }\n" +
		"}\n"
	if _, err := nft(ctx, script, "-f", "-"); err != nil {
		return nil, fmt.Errorf("egress: create table %s: %w", table, err)
	}
	return &Observer{table: table, seen: map[Dest]bool{}}, nil
}

// New returns the destinations recorded since the last call, sorted.
func (o *Observer) New(ctx context.Context) ([]Dest, error) {
	out, err := nft(ctx, "", "-j", "list", "table", "inet", o.table)
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
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := nft(ctx, "", "delete", "table", "inet", o.table); err != nil {
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
	if _, err := nft(ctx, "", "list", "table", "inet", table); err != nil {
		return nil
	}
	if _, err := nft(ctx, "", "delete", "table", "inet", table); err != nil {
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
	_, err = nft(ctx, "", "list", "table", "inet", table)
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

// parseSet reads the sets of `nft -j list table`: seen's elements are
// {"concat": [ip, port]}, other's {"concat": [ip, protocol]}, the protocol
// by name ("icmp") or, when nft has none, by number.
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
			switch item.Set.Name {
			case "other":
				if err = json.Unmarshal(second, &d.Proto); err != nil {
					var n int
					if err = json.Unmarshal(second, &n); err == nil {
						d.Proto = "protocol " + strconv.Itoa(n)
					}
				}
			default:
				err = json.Unmarshal(second, &d.Port)
			}
			if err != nil || (d.Proto == "" && item.Set.Name == "other") {
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
