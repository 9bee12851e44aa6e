package incustest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

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
				var exec struct{ Command string }
				if req.Type != "exec" || ssh.Unmarshal(req.Payload, &exec) != nil {
					_ = req.Reply(false, nil)
					continue
				}
				_ = req.Reply(true, nil)
				stdout, stderr, code := s.answer(guest, exec.Command)
				_, _ = io.WriteString(ch, stdout)
				_, _ = io.WriteString(ch.Stderr(), stderr)
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
				return
			}
		}()
	}
}

// answer is the guest's answer to a command over SSH: Server.Guest's, or
// `cat FILE` from its files, or exit 0 with no output.
func (s *Server) answer(guest *instance, command string) (stdout, stderr string, code int) {
	command = unwrapped(command)
	if s.Guest != nil {
		if stdout, stderr, code, ok := s.Guest(guest.Name, command); ok {
			return stdout, stderr, code
		}
	}
	if f := strings.Fields(command); len(f) == 2 && f[0] == "cat" {
		s.mu.Lock()
		defer s.mu.Unlock()
		if file, ok := guest.files[f[1]]; ok {
			return string(file.Data), "", 0
		}
		return "", "cat: " + f[1] + ": No such file or directory\n", 1
	}
	return "", "", 0
}

// unwrapped is the command a `bash [options] -c 'COMMAND'` wrapper runs
// (remote.Client wraps each command in one), or command as it came.
func unwrapped(command string) string {
	_, q, ok := strings.Cut(command, " -c ")
	if !strings.HasPrefix(command, "bash ") || !ok || len(q) < 2 || q[0] != '\'' || q[len(q)-1] != '\'' {
		return command
	}
	return strings.ReplaceAll(q[1:len(q)-1], `'\''`, `'`)
}
