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

// On a lab machine: a TCP connection, a UDP datagram and a ping to a host
// are contacts — from its own address or a second one it gave itself, over
// IPv4 or IPv6; what every booting Linux sends on its link — LLMNR and mDNS
// to 224.0.0.0/24, IGMP reports, broadcasts, neighbour discovery — is not a
// place the install reached. (Counted, it failed C3 on a slow boot: the
// chatter came after SSH was up, inside the install's window.)
func TestContactsAreHostsNotTheLinksChatter(t *testing.T) {
	c, cfg := labtest.Client(t, "unix")
	if cfg.Expect.Egress != "nft" {
		labtest.Unavailable(t, "CCCI_EGRESS is not nft")
	}
	l := machine.Labels{Prefix: cfg.Guardrails.LabelPrefix}
	runID := fmt.Sprintf("r-egress-%d", time.Now().UnixNano()%1e9)
	name := labtest.StartedInstance(t, c, cfg, "ccci-egress", map[string]string{l.CreatedBy(): machine.CreatedBy,
		l.RunID(): runID, l.ExpiresAt(): time.Now().Add(10 * time.Minute).UTC().Format(time.RFC3339)})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in, err := c.Instance(ctx, cfg.Machine.Project, name)
	require.NoError(t, err)
	require.NoError(t, wait.Eventually(ctx, "the address of "+name, 30*time.Second, func(bool) error {
		st, err := c.State(ctx, cfg.Machine.Project, name)
		if err == nil && st.IPv4(in.NICMACs()...) == "" {
			err = fmt.Errorf("no IPv4 yet")
		}
		return err
	}))
	repo, err := url.Parse(cfg.Target.BaseRepoURL) // the lab's git server, on its bridge
	require.NoError(t, err)
	gateway, port := repo.Hostname(), repo.Port()
	require.NotEmpty(t, in.NICDevices(), "the NIC's host side")
	obs, err := egress.Start(ctx, in.NICDevices(), runID)
	require.NoError(t, err)
	defer obs.Close()

	script := `exec 3>/dev/udp/224.0.0.252/5355; echo llmnr >&3; exec 3>&-
exec 3>/dev/udp/224.0.0.251/5353; echo mdns >&3; exec 3>&-
exec 3>/dev/udp/` + gateway + `/5999; echo unicast >&3; exec 3>&-
exec 3<>/dev/tcp/` + gateway + `/` + port + `; exec 3>&-
busybox ping -c1 -W2 ` + gateway + ` >/dev/null
ip addr add 192.0.2.77/32 dev eth0; busybox ping -I 192.0.2.77 -c1 -W1 198.51.100.1 >/dev/null || true
# right after boot the link-local address is tentative (duplicate address
# detection) and the kernel has no source for the datagram: wait it out
for i in $(seq 30); do ip -6 addr show dev eth0 | grep -q tentative || break; sleep 1; done
echo v6 >/dev/udp/ff0e::db8:1/5999`
	res, err := c.Exec(ctx, cfg.Machine.Project, name, []string{"bash", "-c", script}, nil)
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode, "stderr: %s", res.Stderr)

	// What the machine does by itself besides (a DNS query, say) may be
	// there too: the test is that the three are, and the chatter is not.
	want := []string{gateway + ":5999", gateway + ":" + port, gateway + " (icmp)", "198.51.100.1 (icmp)", "[ff0e::db8:1]:5999"}
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
	for _, d := range seen {
		assert.False(t, strings.HasPrefix(d, "224.0.0.") || strings.HasPrefix(d, "255.255.255.255") || strings.HasPrefix(d, "[ff02:") || strings.HasPrefix(d, "ff02:"),
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
