package machine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	"github.com/cc-ci/acceptance/helpers/incus"
)

// Watcher is told the host-side devices of a machine's NICs after the
// instance is created and before it starts, so that what it observes begins
// with the machine's first frame (egress: from creation to teardown).
type Watcher func(ctx context.Context, mc *Machine, hostNICs []string) error

// observableNICs are the NIC types whose host side is a device of the host's
// own, named by the device's host_name when it is set: a veth for a
// container, a tap for a VM (generateAndPersistHostName in
// internal/server/device/device_common.go, called by nic_bridged.go,
// nic_p2p.go, nic_routed.go and nic_ovn.go). macvlan, ipvlan, sriov and
// physical NICs reach the wire past the host's stack, and an infiniband
// device has no host side: what they send cannot be observed.
var observableNICs = []string{"bridged", "p2p", "routed", "ovn"}

// networkNICType is the NIC type a managed network gives a device that names
// it (network=…): NICType in internal/server/device/nictype/nictype.go.
var networkNICType = map[string]string{"bridge": "bridged", "macvlan": "macvlan", "sriov": "sriov", "ovn": "ovn", "physical": "physical"}

// hostNamedNICs are the instance's own copies of its profile's NIC devices,
// each with host_name set to a name of this machine's own, and those names.
// An instance created without profiles in the request gets the project's
// "default" (instancesPost in cmd/incusd/instances_post.go); an own device
// replaces the profile's of the same name whole (ExpandInstanceDevices in
// internal/server/db/profiles.go). A NIC whose sends cannot be observed is
// an error naming it: nothing is created for a machine that would go unseen.
func hostNamedNICs(ctx context.Context, c *incus.Client, project, instance string) (map[string]map[string]string, []string, error) {
	p, err := c.Profile(ctx, project, "default")
	if err != nil {
		return nil, nil, fmt.Errorf("observe the machine's NICs: %w", err)
	}
	devices := map[string]map[string]string{}
	var names []string
	for _, dev := range slices.Sorted(maps.Keys(p.Devices)) {
		d := p.Devices[dev]
		if !incus.IsNIC(d) {
			continue
		}
		kind := d["nictype"]
		if d["type"] != "nic" {
			kind = d["type"]
		} else if d["network"] != "" {
			n, err := c.Network(ctx, project, d["network"])
			if err != nil {
				return nil, nil, fmt.Errorf("observe NIC %s of profile default: %w", dev, err)
			}
			kind = networkNICType[n.Type]
			if kind == "" {
				kind = "network type " + n.Type
			}
		}
		if !slices.Contains(observableNICs, kind) {
			return nil, nil, fmt.Errorf("NIC %s of project %s's default profile is %s: it reaches the wire past the host, so what the machine sends through it cannot be observed (observable: %v)",
				dev, project, kind, observableNICs)
		}
		own := maps.Clone(d)
		own["host_name"] = hostNICName(instance, len(names))
		devices[dev] = own
		names = append(names, own["host_name"])
	}
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("project %s's default profile gives the machine no NIC", project)
	}
	return devices, names, nil
}

// hostNICName is a host-side device name that only this instance uses: a
// hash of its name (which carries the run's random id), within IFNAMSIZ.
// incusd removes an existing interface of the name it is given
// (device_common.go), so the name must be nobody else's.
func hostNICName(instance string, i int) string {
	sum := sha256.Sum256([]byte(instance))
	return fmt.Sprintf("ccci%s%d", hex.EncodeToString(sum[:4]), i)
}

// checkHostNICs checks, once the machine runs, that every NIC it has is one
// whose host side was named for the watcher: a profile changed between the
// read and the start would otherwise add a NIC nobody watches.
func checkHostNICs(in *incus.Instance, named []string) error {
	devs, err := in.NICDevices()
	if err != nil {
		return err
	}
	for _, d := range devs {
		if !slices.Contains(named, d) {
			return fmt.Errorf("instance %s has a NIC whose host side %s was not named before it started (a profile changed?): what it sends was not observed from the start", in.Name, d)
		}
	}
	return nil
}
