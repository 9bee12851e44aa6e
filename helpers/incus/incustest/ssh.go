package incustest

import (
	"bytes"
	"errors"
	"fmt"
	"net"

	"golang.org/x/crypto/ssh"
)

// startSSH listens for the guests' SSH on 127.0.0.1. A connection is
// answered by the one running instance whose agent is up, with its host
// key, and accepted for a key in its /root/.ssh/authorized_keys.
func (s *Server) startSSH() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("incustest: %w", err)
	}
	s.sshAddr, s.sshListener = l.Addr().(*net.TCPAddr), l
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serveSSH(c)
		}
	}()
	return nil
}

func (s *Server) serveSSH(c net.Conn) {
	defer c.Close()
	s.mu.Lock()
	var guest *instance
	for _, in := range s.instances {
		if in.Status == "Running" && (in.Type != "virtual-machine" || in.calls > s.AgentDelay && !s.AgentNever) {
			guest = in
		}
	}
	s.mu.Unlock()
	if guest == nil {
		return // nothing listens yet: the connection is closed
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		rest := guest.files["/root/.ssh/authorized_keys"].Data
		for len(rest) > 0 {
			k, _, _, r, err := ssh.ParseAuthorizedKey(rest)
			if err != nil {
				break
			}
			if bytes.Equal(k.Marshal(), key.Marshal()) {
				return nil, nil
			}
			rest = r
		}
		return nil, errors.New("key not authorized")
	}}
	cfg.AddHostKey(guest.hostKey)
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			for req := range creqs {
				// Every command succeeds with no output: the guest is not simulated further.
				_ = req.Reply(req.Type == "exec", nil)
				if req.Type == "exec" {
					_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
					return
				}
			}
		}()
	}
}
