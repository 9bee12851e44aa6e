package machine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/remote"
	"github.com/cc-ci/acceptance/helpers/wait"
	"golang.org/x/crypto/ssh"
)

// Reaching a machine: waiting for it to boot, pinning its SSH host key out
// of band (read through the Incus API, never trusted on first use), pushing
// the run's SSH key, and a restart that proves the machine came back.

// ReachedBySSH proves cl is connected to this machine and not another: its
// /etc/machine-id read over SSH is the one Incus reads. (Not the host name:
// the image chooses it — a stock NixOS one says "nixos" whatever the
// instance is called.)
func (mc *Machine) ReachedBySSH(ctx context.Context, cl *remote.Client) error {
	res, err := cl.Run(ctx, "cat /etc/machine-id", bounds.Command)
	if err != nil {
		return err
	}
	out, err := mc.Exec(ctx, []string{"cat", "/etc/machine-id"})
	if err != nil {
		return err
	}
	id := strings.TrimSpace(string(out.Stdout))
	switch {
	case id == "":
		return fmt.Errorf("%s has no machine id (read through Incus)", mc.Name)
	case id != strings.TrimSpace(string(res.Stdout)):
		return fmt.Errorf("SSH reached another machine than %s: /etc/machine-id over SSH and through Incus differ", mc.Name)
	}
	return nil
}

// Restart restarts the machine through Incus after checking it is ours: a
// clean shutdown within shutdown, as `incus restart` asks for one; a guest
// still up then (a VM stopping Docker Swarm) is stopped by force, as
// `incus restart --force` does, and forced says so. Then it waits, within
// boot, until the machine answers again as it did after creation (keyVia:
// Spec.SSHKeyVia), with the host key pinned at creation. Its address is
// read again.
func (mc *Machine) Restart(ctx context.Context, shutdown, boot time.Duration, keyVia string) (forced bool, err error) {
	if _, err := mc.Verify(ctx); err != nil {
		return false, fmt.Errorf("restart %s: %w", mc.Name, err)
	}
	pinned := mc.HostKey
	before, err := mc.bootMark(ctx)
	if err != nil {
		return false, fmt.Errorf("restart %s: tell its boots apart: %w", mc.Name, err)
	}
	if forced, err = mc.restart(ctx, shutdown); err != nil {
		return forced, err
	}
	return forced, mc.awaitBootAgain(ctx, boot, keyVia, before, pinned)
}

// restart asks Incus for a clean restart, and for a forced one when the
// guest was not down within shutdown. A machine Incus reports stopped
// after a failed restart (down, but not booted again) is started.
func (mc *Machine) restart(ctx context.Context, shutdown time.Duration) (forced bool, err error) {
	c := mc.mgr.Client
	clean := c.CleanRestart(ctx, mc.Project, mc.Name, shutdown)
	if clean == nil {
		return false, nil
	}
	st, err := c.State(ctx, mc.Project, mc.Name)
	if err != nil {
		return false, fmt.Errorf("%w; then reading its state: %v", clean, err)
	}
	if st.Status == "Stopped" {
		if err := c.SetState(ctx, mc.Project, mc.Name, "start", false); err != nil {
			return false, fmt.Errorf("%w; then starting it: %v", clean, err)
		}
		return false, nil
	}
	mc.mgr.logf("%s was not down %s after the shutdown request (%v): forcing the stop (CCCI_SHUTDOWN_TIMEOUT)", mc.Name, shutdown, clean)
	if _, err := mc.Verify(ctx); err != nil {
		return false, fmt.Errorf("%w; then before forcing the stop: %w", clean, err)
	}
	if err := c.SetState(ctx, mc.Project, mc.Name, "restart", true); err != nil {
		return true, fmt.Errorf("%w; then forcing the restart: %v", clean, err)
	}
	return true, nil
}

// awaitBootAgain waits for the machine after a restart: ready as after its
// creation, booted again (not the same boot), with the same host key.
func (mc *Machine) awaitBootAgain(ctx context.Context, timeout time.Duration, keyVia, before string, pinned ssh.PublicKey) error {
	if err := mc.awaitReady(ctx, timeout, keyVia); err != nil {
		return fmt.Errorf("after restarting %s: %w", mc.Name, err)
	}
	if after, err := mc.bootMark(ctx); err != nil || after == before {
		return fmt.Errorf("restart %s: Incus said done, but the machine did not boot again (boot id and init's start time %q before and after; %v)", mc.Name, before, err)
	}
	if pinned != nil && !bytes.Equal(pinned.Marshal(), mc.HostKey.Marshal()) {
		return &OwnershipError{Instance: mc.Project + "/" + mc.Name,
			Why: "after the restart its SSH host key is " + ssh.FingerprintSHA256(mc.HostKey) + ", not the one pinned at creation"}
	}
	return nil
}

// awaitReady waits for the stages a machine passes through — an IPv4
// address on its own NIC; the SSH host key, read through Incus (the
// out-of-band channel, which for a VM works only once its agent answers:
// until then Incus says "VM agent isn't currently running" and we wait);
// the run's SSH key pushed through the Incus file API (KeyViaFile); SSH
// answering with the pinned host key — each error naming its stage.
func (mc *Machine) awaitReady(ctx context.Context, timeout time.Duration, keyVia string) error {
	deadline := time.Now().Add(timeout)
	c := mc.mgr.Client
	err := wait.Eventually(ctx, "an IPv4 address on "+mc.Name, time.Until(deadline), func(bool) error {
		st, err := c.State(ctx, mc.Project, mc.Name)
		if errors.Is(err, incus.ErrNotFound) {
			return wait.Stop(err)
		}
		if err != nil {
			return err
		}
		if st.Status != "Running" {
			return fmt.Errorf("status %s", st.Status)
		}
		in, err := mc.Verify(ctx)
		if err != nil {
			return wait.Stop(err)
		}
		macs := in.NICMACs()
		if len(macs) == 0 {
			return wait.Stop(errors.New("Incus reports no MAC for its NIC (no device hwaddr, no volatile.<nic>.hwaddr): its address cannot be told from another bridge's"))
		}
		if mc.IP = st.IPv4(macs...); mc.IP == "" {
			return errors.New("no global IPv4 address on its NIC yet")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("boot stage: %w", err)
	}
	err = wait.Eventually(ctx, "the SSH host key of "+mc.Name+" (via Incus exec)", time.Until(deadline), func(bool) error {
		k, err := mc.readHostKey(ctx)
		if err != nil {
			return err
		}
		mc.HostKey = k
		return nil
	})
	if err != nil {
		return fmt.Errorf("host key stage: %w", err)
	}
	if keyVia == KeyViaFile || keyVia == "" {
		err = wait.Eventually(ctx, "the run's SSH key on "+mc.Name+" (via the Incus file API)", time.Until(deadline), func(bool) error {
			return mc.pushAuthorizedKey(ctx)
		})
		if err != nil {
			return fmt.Errorf("SSH key stage: %w", err)
		}
	}
	err = wait.Eventually(ctx, "SSH on "+mc.Name+" ("+mc.sshAddr()+")", time.Until(deadline), func(bool) error {
		cl, err := mc.SSH(ctx)
		if err != nil {
			return err
		}
		defer cl.Close()
		_, err = cl.Run(ctx, "true", bounds.Command)
		return err
	})
	if err != nil {
		return fmt.Errorf("SSH stage: %w", err)
	}
	return nil
}

// readHostKey reads the machine's SSH host key through Incus: the channel
// that does not depend on the network path the key is meant to protect.
func (mc *Machine) readHostKey(ctx context.Context) (ssh.PublicKey, error) {
	b, err := mc.cat(ctx, "/etc/ssh/ssh_host_ed25519_key.pub")
	if err != nil {
		return nil, err
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse host key: %w", err)
	}
	return k, nil
}

// cat reads a file through Incus exec (the out-of-band channel).
func (mc *Machine) cat(ctx context.Context, path string) ([]byte, error) {
	res, err := mc.Exec(ctx, []string{"cat", path})
	if err != nil {
		return nil, stopIfRefused(err)
	}
	if res.ExitCode != 0 {
		return nil, fmt.Errorf("cat %s: exit %d: %s", path, res.ExitCode, mc.mgr.Redact.Redact(bounded(res.Stderr, 512)))
	}
	return res.Stdout, nil
}

// bootMark tells one boot of the machine from the next: the kernel's boot
// id (new at every boot of a VM) and PID 1's start time (a container shares
// its host's kernel and boot id; only its init is new).
func (mc *Machine) bootMark(ctx context.Context) (string, error) {
	id, err := mc.cat(ctx, "/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}
	stat, err := mc.cat(ctx, "/proc/1/stat")
	if err != nil {
		return "", err
	}
	// "1 (init) S 0 …": the start time is field 22, the 20th after the name.
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(f) < 20 {
		return "", fmt.Errorf("/proc/1/stat: %q is not a process's stat line", bounded(stat, 80))
	}
	return strings.TrimSpace(string(id)) + " pid1-start " + f[19], nil
}

// bounded is at most n bytes of b, trimmed, for a message.
func bounded(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.TrimSpace(string(b))
}

// pushAuthorizedKey writes the run's public key as root's only authorized
// key, through Incus (after checking ownership): /root/.ssh 0700, the file
// 0600, both root's. incusd applies a push's mode and owner only when it
// creates the file (cmd/incusd/instance_file.go, fileSFTPPost), so a file the
// image already has is removed first, and both are read back: sshd's
// StrictModes refuses keys in a directory or file others may write.
func (mc *Machine) pushAuthorizedKey(ctx context.Context) error {
	const dir, keys = "/root/.ssh", "/root/.ssh/authorized_keys"
	if err := mc.PushFile(ctx, incus.FileSpec{Path: dir, Mode: 0o700, Dir: true}); err != nil {
		return stopIfRefused(err)
	}
	if err := mc.deleteFile(ctx, keys); err != nil {
		return stopIfRefused(err)
	}
	if err := mc.PushFile(ctx, incus.FileSpec{Path: keys, Mode: 0o600, Data: ssh.MarshalAuthorizedKey(mc.Signer.PublicKey())}); err != nil {
		return stopIfRefused(err)
	}
	for _, p := range []string{dir, keys} {
		fi, err := mc.mgr.Client.StatFile(ctx, mc.Project, mc.Name, p)
		if err != nil {
			return err
		}
		if fi.UID != 0 || fi.Mode&0o022 != 0 {
			return wait.Stop(fmt.Errorf("%s on %s is mode %04o, uid %d (the image's own; Incus does not change an existing one): "+
				"sshd refuses a key others may write — fix the image", p, mc.Name, fi.Mode, fi.UID))
		}
	}
	return nil
}

// stopIfRefused ends a wait at once on a refusal to touch the instance
// (it will not become ours by waiting); other errors are retried.
func stopIfRefused(err error) error {
	var refused *OwnershipError
	if errors.As(err, &refused) {
		return wait.Stop(err)
	}
	return err
}

// deleteFile removes a file on the machine through Incus, after checking ownership.
func (mc *Machine) deleteFile(ctx context.Context, path string) error {
	if _, err := mc.Verify(ctx); err != nil {
		return fmt.Errorf("delete %s on %s: %w", path, mc.Name, err)
	}
	return mc.mgr.Client.DeleteFile(ctx, mc.Project, mc.Name, path)
}

func (mc *Machine) sshAddr() string {
	port := 22
	if mc.mgr != nil && mc.mgr.SSHPort != 0 {
		port = mc.mgr.SSHPort
	}
	return net.JoinHostPort(mc.IP, strconv.Itoa(port))
}

// SSH opens a connection that accepts only the pinned host key.
func (mc *Machine) SSH(ctx context.Context) (*remote.Client, error) {
	return remote.Dial(ctx, remote.Config{Addr: mc.sshAddr(), User: mc.User, Signer: mc.Signer,
		HostKey: mc.HostKey, Redact: mc.mgr.Redact, Log: mc.mgr.Log})
}
