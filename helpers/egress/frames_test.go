package egress_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/egress"
	"github.com/cc-ci/acceptance/helpers/labtest"
)

// Every kind of frame a machine can send, written raw onto one end of a
// veth pair whose other end (the host side, as a machine's NIC has) the
// observer watches, attached before the pair exists — as it is attached
// before a machine starts. Counted: a SYN, an ACK-only segment that no
// handshake began, a fragment, a header cut short, a datagram to the
// broadcast address or to a link-scope group on a port no link protocol
// uses, a non-IP frame, IPv6 alike; not counted: the answer to a connection
// opened to the machine, DHCP, mDNS, ARP. All traffic stays on this host:
// the destinations are the host side's own addresses and the link's groups.
func TestEveryFrameIsSeenFromTheDevicesStart(t *testing.T) {
	if os.Geteuid() != 0 {
		labtest.Unavailable(t, "needs root (nftables, a veth pair)")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		labtest.Unavailable(t, "no nft")
	}
	id := fmt.Sprintf("%d", time.Now().UnixNano()%1e6)
	host, machine := "cccih"+id, "cccim"+id
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	obs, err := egress.Start(ctx, []string{host}, "r-frames-"+id)
	require.NoError(t, err, "the chains attach to a device that does not exist yet")
	defer obs.Close()

	ip := func(args ...string) {
		out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %v: %s", args, out)
	}
	ip("link", "add", host, "type", "veth", "peer", "name", machine)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	// The host side's own addresses: what reaches it stays on this host.
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+machine+"/disable_ipv6", []byte("1"), 0o644)
	ip("addr", "add", "10.251.77.1/24", "dev", host)
	ip("addr", "add", "fdcc:c1::1/64", "dev", host, "nodad")
	ip("link", "set", host, "up")
	ip("link", "set", machine, "up")

	self, peer := net.IPv4(10, 251, 77, 1).To4(), net.IPv4(10, 251, 77, 2).To4()
	self6, peer6 := net.ParseIP("fdcc:c1::1"), net.ParseIP("fdcc:c1::2")
	bcast, all := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, net.IPv4bcast.To4()
	hostMAC := mac(t, host)
	send := func(dev string, dst net.HardwareAddr, etherType uint16, payload []byte) {
		t.Helper()
		require.NoError(t, sendFrame(dev, dst, etherType, payload))
	}
	const syn, ack, synack = 0x02, 0x10, 0x12
	// From the machine: each of these is a contact.
	send(machine, hostMAC, 0x0800, ipv4(peer, self, 6, 0, tcp(40001, 1001, syn)))
	send(machine, hostMAC, 0x0800, ipv4(peer, self, 6, 0, tcp(40002, 1002, ack)))
	send(machine, hostMAC, 0x0800, ipv4(peer, self, 6, 0x2000, tcp(40003, 1003, syn)[:8]))
	send(machine, hostMAC, 0x0800, ipv4(peer, self, 6, 0, []byte{0x9c, 0x43}))
	send(machine, bcast, 0x0800, ipv4(peer, all, 17, 0, udp(40004, 9999)))
	send(machine, bcast, 0x0800, ipv4(peer, net.IPv4(224, 0, 0, 251).To4(), 17, 0, udp(40005, 9999)))
	send(machine, bcast, 0x88b5, []byte("a frame of no IP protocol, to every host on the link"))
	send(machine, hostMAC, 0x86dd, ipv6(peer6, self6, 6, tcp(40006, 1004, ack)))
	// A connection opened to the machine (the SYN goes in), and its answer.
	send(host, mac(t, machine), 0x0800, ipv4(self, peer, 6, 0, tcp(50000, 22, syn)))
	send(machine, hostMAC, 0x0800, ipv4(peer, self, 6, 0, tcp(22, 50000, synack)))
	send(machine, hostMAC, 0x0800, ipv4(peer, self, 6, 0, tcp(22, 50000, ack)))
	// What every booting machine sends on its link.
	send(machine, bcast, 0x0800, ipv4(net.IPv4zero.To4(), all, 17, 0, udp(68, 67)))
	send(machine, bcast, 0x0800, ipv4(peer, net.IPv4(224, 0, 0, 251).To4(), 17, 0, udp(5353, 5353)))
	send(machine, bcast, 0x0806, arp(mac(t, machine), peer, self))

	want := []string{"10.251.77.1:1001", "10.251.77.1:1002", "10.251.77.1 (tcp, fragmented)", "10.251.77.1 (tcp)",
		"255.255.255.255:9999", "224.0.0.251:9999", "ff:ff:ff:ff:ff:ff (ethertype 0x88b5)", "[fdcc:c1::1]:1004"}
	var seen []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		fresh, err := obs.New(ctx)
		require.NoError(t, err)
		for _, d := range fresh {
			seen = append(seen, d.String())
		}
		if len(seen) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	assert.ElementsMatch(t, want, seen, "every frame the machine started, and nothing else (its answer to a connection, DHCP, mDNS, ARP)")
}

func mac(t *testing.T, dev string) net.HardwareAddr {
	t.Helper()
	ifc, err := net.InterfaceByName(dev)
	require.NoError(t, err)
	return ifc.HardwareAddr
}

// sendFrame writes one Ethernet frame onto dev, as the machine's kernel would.
func sendFrame(dev string, dst net.HardwareAddr, etherType uint16, payload []byte) error {
	ifc, err := net.InterfaceByName(dev)
	if err != nil {
		return err
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	frame := append(append(append([]byte{}, dst...), ifc.HardwareAddr...), byte(etherType>>8), byte(etherType))
	frame = append(frame, payload...)
	var to syscall.SockaddrLinklayer
	to.Ifindex, to.Halen = ifc.Index, 6
	copy(to.Addr[:], dst)
	return syscall.Sendto(fd, frame, 0, &to)
}

func ipv4(src, dst net.IP, proto byte, fragOff uint16, payload []byte) []byte {
	h := make([]byte, 20)
	h[0], h[8], h[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(h[6:], fragOff)
	copy(h[12:], src)
	copy(h[16:], dst)
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
	return append(h, payload...)
}

func ipv6(src, dst net.IP, next byte, payload []byte) []byte {
	h := make([]byte, 40)
	h[0], h[6], h[7] = 0x60, next, 64
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	copy(h[8:], src.To16())
	copy(h[24:], dst.To16())
	return append(h, payload...)
}

func tcp(sport, dport uint16, flags byte) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	h[12], h[13] = 5<<4, flags
	binary.BigEndian.PutUint16(h[14:], 1024)
	return h
}

func udp(sport, dport uint16) []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], 8)
	return h
}

func arp(sender net.HardwareAddr, senderIP, targetIP net.IP) []byte {
	p := []byte{0, 1, 8, 0, 6, 4, 0, 1}
	p = append(append(p, sender...), senderIP...)
	return append(append(p, make([]byte, 6)...), targetIP...)
}
