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

// Dest is one destination the machine opened a connection to.
type Dest struct {
	IP   string
	Port int
}

func (d Dest) String() string { return net.JoinHostPort(d.IP, strconv.Itoa(d.Port)) }

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
	// A contact is a TCP connection or a UDP flow to a host. The link's own
	// chatter — LLMNR/mDNS to 224.0.0.0/24, IGMP, broadcasts — that a booting
	// system sends by itself reaches no host and is not the install's doing.
	rule := fmt.Sprintf("ip saddr %s meta l4proto { tcp, udp } ip daddr != { %s } ct state new update @seen { ip daddr . th dport }",
		ip, strings.Join(linkOnly, ", "))
	script := "table inet " + table + " {\n" +
		"  set seen { type ipv4_addr . inet_service; flags dynamic; size 65536; }\n" +
		"  chain through_host { type filter hook forward priority -10; policy accept; " + rule + "; }\n" +
		"  chain to_host { type filter hook input priority -10; policy accept; " + rule + "; }\n" +
		"}\n"
	if _, err := nft(ctx, script, "-f", "-"); err != nil {
		return nil, fmt.Errorf("egress: create table %s: %w", table, err)
	}
	return &Observer{table: table, seen: map[Dest]bool{}}, nil
}

// New returns the destinations recorded since the last call, sorted.
func (o *Observer) New(ctx context.Context) ([]Dest, error) {
	out, err := nft(ctx, "", "-j", "list", "set", "inet", o.table, "seen")
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

// parseSet reads `nft -j list set`: elements are {"concat": [ip, port]}.
func parseSet(b []byte) ([]Dest, error) {
	var doc struct {
		Nftables []struct {
			Set *struct {
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
			var ip string
			var port int
			if len(e.Concat) != 2 || json.Unmarshal(e.Concat[0], &ip) != nil || json.Unmarshal(e.Concat[1], &port) != nil ||
				net.ParseIP(ip) == nil {
				return nil, fmt.Errorf("unexpected set element %s", e.Concat)
			}
			out = append(out, Dest{IP: ip, Port: port})
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
