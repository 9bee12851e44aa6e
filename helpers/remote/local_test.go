package remote

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// localMachine is an SSH server on 127.0.0.1 that runs each session's
// command with this machine's sh, as sshd runs it with the user's shell:
// the real protocol and a real bash, no Incus, no machine.
func localMachine(t *testing.T) Config {
	t.Helper()
	hostKey, _, err := NewKey()
	require.NoError(t, err)
	client, _, err := NewKey()
	require.NoError(t, err)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) != string(client.PublicKey().Marshal()) {
			return nil, errors.New("unknown key")
		}
		return nil, nil
	}}
	cfg.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go serveLocal(nc, cfg)
		}
	}()
	return Config{Addr: l.Addr().String(), Signer: client, HostKey: hostKey.PublicKey(), Timeout: 5 * time.Second}
}

func serveLocal(nc net.Conn, cfg *ssh.ServerConfig) {
	defer nc.Close()
	_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		ch, creqs, err := nch.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range creqs {
				var p struct{ Command string }
				if req.Type != "exec" || ssh.Unmarshal(req.Payload, &p) != nil {
					_ = req.Reply(req.Type == "signal", nil)
					continue
				}
				_ = req.Reply(true, nil)
				cmd := exec.Command("sh", "-c", p.Command)
				cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
				stdin, _ := cmd.StdinPipe()
				status := uint32(1)
				if cmd.Start() == nil {
					var wg sync.WaitGroup
					wg.Add(1)
					go func() { defer wg.Done(); _, _ = io.Copy(stdin, ch); stdin.Close() }()
					var ee *exec.ExitError
					if err := cmd.Wait(); err == nil {
						status = 0
					} else if errors.As(err, &ee) {
						status = uint32(ee.ExitCode())
					}
				}
				_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
				return
			}
		}()
	}
}
