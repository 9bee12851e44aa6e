package egress_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/egress"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/machine"
	"github.com/cc-ci/acceptance/helpers/wait"
)

// On a lab machine, watched as a run watches it (its NIC's host side named
// by the harness, the observer attached before it starts): a TCP
// connection, a UDP datagram and a ping to a host are contacts — from its
// own address or a second one it gave itself, over IPv4 or IPv6 — and so
// are a datagram to a link-scope group on a port no link protocol uses, a
// fragmented ping and a non-IP frame; what every
// booting Linux sends on its link — LLMNR and mDNS on their groups and
// ports, IGMP reports, DHCP, neighbour discovery — is not a place the
// install reached. (Counted, it failed C3 on a slow boot: the chatter came
// after SSH was up, inside the install's window.)
func TestContactsAreHostsNotTheLinksChatter(t *testing.T) {
	c, cfg := labtest.Client(t, "unix")
	if cfg.Expect.Egress != "nft" {
		labtest.Unavailable(t, "CCCI_EGRESS is not nft")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m := &machine.Manager{Client: c, Guard: cfg.Guardrails, Labels: machine.Labels{Prefix: cfg.Guardrails.LabelPrefix},
		RunID: machine.NewRunID(time.Now()), Log: t.Logf}
	var obs *egress.Observer
	m.Watch = func(ctx context.Context, _ *machine.Machine, hostNICs []string) error {
		var err error
		obs, err = egress.Start(ctx, hostNICs, m.RunID)
		return err
	}
	t.Cleanup(func() {
		_ = m.DestroyAll(context.Background())
		if obs != nil {
			_ = obs.Close()
		}
	})
	spec := machine.SpecFrom(cfg)
	spec.Memory = 512 << 20
	mc, err := m.Create(ctx, spec)
	require.NoError(t, err)
	in, err := mc.Verify(ctx)
	require.NoError(t, err)
	devs, err := in.NICDevices()
	require.NoError(t, err)
	assert.Len(t, devs, 1)
	assert.Regexp(t, `^ccci[0-9a-f]{8}0$`, devs[0], "incusd used the name the harness gave the NIC's host side")

	repo, err := url.Parse(cfg.Target.BaseRepoURL) // the lab's git server, on its bridge
	require.NoError(t, err)
	gateway, port := repo.Hostname(), repo.Port()
	script := `set -e
exec 3>/dev/udp/224.0.0.252/5355; echo llmnr >&3; exec 3>&-
exec 3>/dev/udp/224.0.0.251/5353; echo mdns >&3; exec 3>&-
exec 3>/dev/udp/224.0.0.1/5999; echo every-host >&3; exec 3>&-
exec 3>/dev/udp/` + gateway + `/5999; echo unicast >&3; exec 3>&-
exec 3<>/dev/tcp/` + gateway + `/` + port + `; exec 3>&-
busybox ping -c1 -W2 ` + gateway + ` >/dev/null
busybox ping -c1 -W2 -s 3000 ` + gateway + ` >/dev/null || true
perl -e 'socket(my $s, 17, 3, 0) or die "socket: $!"; # AF_PACKET, SOCK_RAW: a frame of EtherType 0x88b5 to broadcast
  open(my $f, "<", "/sys/class/net/eth0/ifindex") or die; chomp(my $i = <$f>);
  open(my $m, "<", "/sys/class/net/eth0/address") or die; chomp(my $a = <$m>);
  my $dst = "\xff" x 6; my $src = pack("H12", join("", split(/:/, $a)));
  send($s, $dst . $src . pack("n", 0x88b5) . ("x" x 46), 0, pack("S n i S C C a8", 17, 0x88b5, $i, 0, 0, 6, $dst)) or die "send: $!"'
ip addr add 192.0.2.77/32 dev eth0; busybox ping -I 192.0.2.77 -c1 -W1 198.51.100.1 >/dev/null || true
# right after boot the link-local address is tentative (duplicate address
# detection) and the kernel has no source for the datagram: wait it out
for i in $(seq 30); do ip -6 addr show dev eth0 | grep -q tentative || break; sleep 1; done
echo v6 >/dev/udp/ff0e::db8:1/5999`
	res, err := c.Exec(ctx, mc.Project, mc.Name, []string{"bash", "-c", script}, nil)
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode, "stderr: %s", res.Stderr)

	// What the machine does by itself besides (a DNS query, say) may be
	// there too: the test is that these are, and the chatter is not.
	want := []string{gateway + ":5999", gateway + ":" + port, gateway + " (icmp)", "198.51.100.1 (icmp)", "[ff0e::db8:1]:5999",
		"224.0.0.1:5999", gateway + " (icmp, fragmented)", "ff:ff:ff:ff:ff:ff (ethertype 0x88b5)"}
	var seen []string
	require.NoError(t, wait.Eventually(ctx, "the contacts with hosts", 10*time.Second, func(bool) error {
		fresh, err := obs.New(ctx)
		for _, d := range fresh {
			seen = append(seen, d.String())
		}
		if err == nil && !subset(want, seen) {
			err = fmt.Errorf("seen %v", seen)
		}
		return err
	}))
	t.Logf("seen: %v", seen)
	for _, d := range seen {
		assert.False(t, strings.HasPrefix(d, "224.0.0.25") || strings.Contains(d, ":67") || strings.HasPrefix(d, "[ff02:"),
			"the link's chatter is not a contact: %s (all: %v)", d, seen)
	}
}

func subset(want, got []string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}
