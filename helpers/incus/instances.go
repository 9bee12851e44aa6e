package incus

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// Instance types.
const (
	Container      = "container"
	VirtualMachine = "virtual-machine"
)

// Instance is one container or VM as GET /1.0/instances?recursion=1 describes it.
type Instance struct {
	Name           string            `json:"name"`
	Project        string            `json:"project"`
	Type           string            `json:"type"`
	Status         string            `json:"status"` // Running, Stopped, …
	Location       string            `json:"location"`
	CreatedAt      time.Time         `json:"created_at"`
	Config         map[string]string `json:"config"`
	ExpandedConfig map[string]string `json:"expanded_config"`
	// ExpandedDevices are the instance's devices with its profiles' merged in.
	ExpandedDevices map[string]map[string]string `json:"expanded_devices"`
}

// InstanceSpec is what Create asks for.
type InstanceSpec struct {
	Name       string
	Project    string
	Type       string // Container or VirtualMachine
	ImageAlias string
	Config     map[string]string // limits.memory, user.* labels, …
	// Devices are the instance's own devices; one named as a profile's
	// replaces it whole (ExpandInstanceDevices, internal/server/db/profiles.go).
	Devices map[string]map[string]string
}

type instancesPost struct {
	Name    string                       `json:"name"`
	Type    string                       `json:"type"`
	Source  instanceSource               `json:"source"`
	Config  map[string]string            `json:"config,omitempty"`
	Devices map[string]map[string]string `json:"devices,omitempty"`
	Start   bool                         `json:"start"`
}

type instanceSource struct {
	Type  string `json:"type"`
	Alias string `json:"alias"`
}

// CreateInstance creates (but does not start) an instance from an image alias.
func (c *Client) CreateInstance(ctx context.Context, spec InstanceSpec) error {
	q := projectQuery(spec.Project)
	if c.target != "" {
		q.Set("target", c.target)
	}
	body := instancesPost{
		Name:    spec.Name,
		Type:    spec.Type,
		Source:  instanceSource{Type: "image", Alias: spec.ImageAlias},
		Config:  spec.Config,
		Devices: spec.Devices,
	}
	_, err := c.async(ctx, http.MethodPost, "/1.0/instances", q, body)
	if err != nil {
		return fmt.Errorf("create instance %s/%s from image %q: %w", spec.Project, spec.Name, spec.ImageAlias, err)
	}
	return nil
}

// Instance returns one instance.
func (c *Client) Instance(ctx context.Context, project, name string) (*Instance, error) {
	return get[Instance](ctx, c, instancePath(name), projectQuery(project))
}

// Instances lists the instances of one project, or of every project the
// credentials can see when project is "" (all-projects=true).
func (c *Client) Instances(ctx context.Context, project string) ([]Instance, error) {
	q := url.Values{"recursion": {"1"}}
	if project == "" {
		q.Set("all-projects", "true")
	} else {
		q.Set("project", project)
	}
	var out []Instance
	_, err := c.do(ctx, http.MethodGet, "/1.0/instances", q, nil, &out)
	return out, err
}

// SetState starts, stops or restarts an instance and waits for it.
func (c *Client) SetState(ctx context.Context, project, name, action string, force bool) error {
	body := map[string]any{"action": action, "timeout": 30, "force": force}
	_, err := c.async(ctx, http.MethodPut, instancePath(name)+"/state", projectQuery(project), body)
	if err != nil {
		return fmt.Errorf("%s instance %s/%s: %w", action, project, name, err)
	}
	return nil
}

// CleanRestart restarts an instance cleanly: incusd asks the guest to shut
// down and waits up to timeout (whole seconds), then boots it. A guest not
// down by then fails the operation and stays running ("Failed shutting
// down instance, status is \"Running\"": Shutdown in
// internal/server/instance/drivers/driver_{lxc,qemu}.go, through
// restartCommon in driver_common.go); SetState's forced restart is the
// caller's next step.
func (c *Client) CleanRestart(ctx context.Context, project, name string, timeout time.Duration) error {
	body := map[string]any{"action": "restart", "timeout": int(timeout / time.Second), "force": false}
	if _, err := c.async(ctx, http.MethodPut, instancePath(name)+"/state", projectQuery(project), body); err != nil {
		return fmt.Errorf("restart instance %s/%s cleanly within %s: %w", project, name, timeout, err)
	}
	return nil
}

// SetConfig sets one config key of an instance (PATCH).
func (c *Client) SetConfig(ctx context.Context, project, name, key, value string) error {
	body := map[string]any{"config": map[string]string{key: value}}
	if _, err := c.do(ctx, http.MethodPatch, instancePath(name), projectQuery(project), body, nil); err != nil {
		return fmt.Errorf("set %s on %s/%s: %w", key, project, name, err)
	}
	return nil
}

// DeleteInstance deletes a stopped instance.
func (c *Client) DeleteInstance(ctx context.Context, project, name string) error {
	_, err := c.async(ctx, http.MethodDelete, instancePath(name), projectQuery(project), nil)
	if err != nil {
		return fmt.Errorf("delete instance %s/%s: %w", project, name, err)
	}
	return nil
}

// InstanceState is the live state: status, addresses, memory.
type InstanceState struct {
	Status  string                  `json:"status"`
	Pid     int64                   `json:"pid"`
	Network map[string]NetworkState `json:"network"`
	Memory  MemoryState             `json:"memory"`
}

// NetworkState is one interface of InstanceState. A container's are named
// by its kernel (eth0); a VM's by its guest agent (enp5s0), or, before the
// agent answers, after the Incus device — so interfaces are matched by MAC.
type NetworkState struct {
	Addresses []Address `json:"addresses"`
	State     string    `json:"state"`
	Type      string    `json:"type"`
	Hwaddr    string    `json:"hwaddr"`
}

// Address is one address of an interface.
type Address struct {
	Family  string `json:"family"` // inet, inet6
	Address string `json:"address"`
	Scope   string `json:"scope"` // global, link, local
}

// MemoryState is the memory part of InstanceState (bytes).
type MemoryState struct {
	Usage     int64 `json:"usage"`
	UsagePeak int64 `json:"usage_peak"`
	Total     int64 `json:"total"`
	SwapUsage int64 `json:"swap_usage"`
}

// State returns the live state of an instance.
func (c *Client) State(ctx context.Context, project, name string) (*InstanceState, error) {
	return get[InstanceState](ctx, c, instancePath(name)+"/state", projectQuery(project))
}

// IPv4 returns the global IPv4 address of the instance's own NIC: the
// interface whose MAC is one of macs (Instance.NICMACs). A guest's other
// interfaces (docker0, bridges) have other MACs and are never chosen. With
// no macs (a caller that cannot know them), the first interface by name that
// is not lo — which on a guest running Docker can be docker0: the machine
// code always passes the MACs.
func (s *InstanceState) IPv4(macs ...string) string {
	names := make([]string, 0, len(s.Network))
	for n := range s.Network {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, ifname := range names {
		n := s.Network[ifname]
		if ifname == "lo" || (len(macs) > 0 && !slices.Contains(macs, strings.ToLower(n.Hwaddr))) {
			continue
		}
		for _, a := range n.Addresses {
			if a.Family == "inet" && a.Scope == "global" {
				return a.Address
			}
		}
	}
	return ""
}

// NICDevices are the host-side network devices of the instance's NICs (a
// container's veth, a VM's tap): what incusd records, once the instance
// runs, as volatile.<device>.host_name.
func (in *Instance) NICDevices() ([]string, error) {
	var out []string
	for _, dev := range slices.Sorted(maps.Keys(in.ExpandedDevices)) {
		d := in.ExpandedDevices[dev]
		if !IsNIC(d) {
			continue
		}
		h := in.Config["volatile."+dev+".host_name"]
		if h == "" {
			return nil, fmt.Errorf("instance %s: NIC %s (%s) has no host-side device (no volatile.%s.host_name): what it sends cannot be observed",
				in.Name, dev, nicKind(d), dev)
		}
		out = append(out, h)
	}
	sort.Strings(out)
	return out, nil
}

// IsNIC says whether a device gives the instance a network link: a nic, or
// an infiniband device (which has no host side to observe).
func IsNIC(d map[string]string) bool { return d["type"] == "nic" || d["type"] == "infiniband" }

func nicKind(d map[string]string) string {
	switch {
	case d["type"] != "nic":
		return d["type"]
	case d["nictype"] != "":
		return "nictype " + d["nictype"]
	default:
		return "network " + d["network"]
	}
}

// NICMACs are the MAC addresses of the instance's NIC devices: the one a
// device's own config fixes (hwaddr, e.g. a static MAC in a profile), else
// the one Incus generated for it (volatile.<device>.hwaddr — incusd writes
// it only when the device has none: fillNetworkDevice in
// internal/server/instance/drivers/driver_{lxc,qemu}.go).
func (in *Instance) NICMACs() []string {
	var out []string
	add := func(mac string) {
		if mac = strings.ToLower(mac); mac != "" && !slices.Contains(out, mac) {
			out = append(out, mac)
		}
	}
	for dev, d := range in.ExpandedDevices {
		if d["type"] != "nic" {
			continue
		}
		if d["hwaddr"] != "" {
			add(d["hwaddr"])
		} else {
			add(in.Config["volatile."+dev+".hwaddr"])
		}
	}
	for k, v := range in.Config {
		if strings.HasPrefix(k, "volatile.") && strings.HasSuffix(k, ".hwaddr") {
			add(v)
		}
	}
	sort.Strings(out)
	return out
}

func instancePath(name string) string { return "/1.0/instances/" + url.PathEscape(name) }
