package machine_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/incus/incustest"
	"github.com/cc-ci/acceptance/helpers/machine"
)

// With a watcher, each NIC's host side is named by the harness and the
// watcher is told the names after the instance is created and before it is
// started, so that what it observes begins with the machine's first frame;
// on a VM (a tap) as on a container (a veth).
func TestTheNICsAreWatchedBeforeTheMachineStarts(t *testing.T) {
	for _, typ := range []string{incus.Container, incus.VirtualMachine} {
		t.Run(typ, func(t *testing.T) {
			f, m := newFake(t, incustest.Image{NeedsSecureBootOff: true})
			var told []string
			var before []string
			m.Watch = func(_ context.Context, mc *machine.Machine, hostNICs []string) error {
				told, before = hostNICs, f.Requests()
				return nil
			}
			mc, err := m.Create(context.Background(), spec(typ, machine.KeyViaFile))
			require.NoError(t, err)
			require.Len(t, told, 1, "one NIC, one name")
			assert.Regexp(t, `^ccci[0-9a-f]{8}0$`, told[0], "a name of the machine's own, within IFNAMSIZ")
			assert.Contains(t, before, "POST /1.0/instances", "told after the creation")
			assert.NotContains(t, before, "PUT /1.0/instances/"+mc.Name+"/state", "… and before the start")
			_, cfg, _ := f.Instance(project, mc.Name)
			assert.Equal(t, told[0], cfg["volatile.eth0.host_name"], "incusd used the name")
			require.NoError(t, m.DestroyAll(context.Background()))
		})
	}
}

// A NIC whose sends the host cannot observe (macvlan reaches the wire past
// the host's stack) is refused before anything is created, naming it; a
// watcher's own failure aborts the creation, and the machine is destroyed.
func TestANICThatCannotBeWatchedCreatesNothing(t *testing.T) {
	f, m := newFake(t, incustest.Image{})
	f.ExtraNICs = map[string]map[string]string{"eth1": {"type": "nic", "nictype": "macvlan", "parent": "eno1"}}
	m.Watch = func(context.Context, *machine.Machine, []string) error { return nil }
	_, err := m.Create(context.Background(), spec(incus.Container, machine.KeyViaFile))
	require.ErrorContains(t, err, "NIC eth1 of project "+project+"'s default profile is macvlan")
	assert.False(t, slices.ContainsFunc(f.Requests(), func(r string) bool { return strings.HasPrefix(r, "POST /1.0/instances") }),
		"nothing was created")

	f, m = newFake(t, incustest.Image{})
	m.Watch = func(context.Context, *machine.Machine, []string) error { return errors.New("nft: no such table") }
	mc, err := m.Create(context.Background(), spec(incus.Container, machine.KeyViaFile))
	require.ErrorContains(t, err, "watch its NICs: nft: no such table")
	assert.NotContains(t, f.Requests(), "PUT /1.0/instances/"+mc.Name+"/state", "never started")
	require.NoError(t, m.DestroyAll(context.Background()))
	_, _, exists := f.Instance(project, mc.Name)
	assert.False(t, exists, "destroyed")
}
