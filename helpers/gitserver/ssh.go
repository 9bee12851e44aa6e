package gitserver

// Git over SSH, read-only, as a forge serves a repo to its deploy keys:
// user "git", public-key authentication only, one command
// (git-upload-pack '<repo>'), and a repo readable only by the keys listed
// in its deploy-keys file (authorized_keys format, beside the bare repo) —
// or by any key the server knows, if it is public (no token file: the HTTP
// server's mark). A key registered with no repo is refused at the door,
// public repo or not, as Gitea does (modules/ssh/ssh.go, publicKeyHandler:
// "Unknown public key" → false): over SSH a stranger learns nothing of a
// repo's privacy; a forge shows it to anonymous readers over HTTP(S).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/fetchlog"
)

// SSHServer serves the bare repos under Root to their deploy keys.
type SSHServer struct {
	Root           string     // directory of bare repos, as Server's
	DeployKeysFile string     // name of the authorized_keys file inside a bare repo
	TokenFile      string     // as Server's: a repo served over SSH without it is public, read by any key ("": none is)
	HostKey        ssh.Signer // the server's host key (clients pin it in known_hosts)
	Log            Logf
	Fetches        *fetchlog.Writer // as Server's
}

const extKey = "ccci-key" // the authenticated key, carried from auth to the command

// Serve accepts connections on l until it is closed.
func (s *SSHServer) Serve(l net.Listener) error {
	cfg := &ssh.ServerConfig{
		// A key the server knows (a deploy key of some repo) may
		// authenticate; which repos it may read is decided per repo, as a
		// forge does. No password, no keyboard-interactive, no "none".
		PublicKeyCallback: func(md ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if md.User() != "git" {
				return nil, fmt.Errorf("user %q: only git", md.User())
			}
			if !s.known(key) {
				return nil, fmt.Errorf("unknown public key %s", ssh.FingerprintSHA256(key))
			}
			return &ssh.Permissions{Extensions: map[string]string{extKey: string(key.Marshal())}}, nil
		},
	}
	cfg.AddHostKey(s.HostKey)
	for {
		conn, err := l.Accept()
		if err != nil {
			return err
		}
		go s.serveConn(conn, cfg)
	}
}

func (s *SSHServer) serveConn(nc net.Conn, cfg *ssh.ServerConfig) {
	defer nc.Close()
	conn, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		s.Log.printf("ssh %s: refused: %v", nc.RemoteAddr(), err)
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	key, _ := ssh.ParsePublicKey([]byte(conn.Permissions.Extensions[extKey]))
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, chReqs, err := nch.Accept()
		if err != nil {
			return
		}
		go s.session(ch, chReqs, key, fetchlog.RemoteOf(nc.RemoteAddr().String()))
	}
}

// session runs the one exec request a git client sends.
func (s *SSHServer) session(ch ssh.Channel, reqs <-chan *ssh.Request, key ssh.PublicKey, remote string) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(false, nil)
			continue
		}
		var p struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			_ = req.Reply(false, nil)
			return
		}
		_ = req.Reply(true, nil)
		_, arg, _ := strings.Cut(p.Command, " ")
		if err := s.Fetches.Record(fetchlog.Entry{Time: time.Now().UTC(), Remote: remote, Protocol: "ssh",
			Repo: strings.Trim(path.Clean("/"+strings.Trim(arg, "'")), "/")}); err != nil {
			s.Log.printf("ssh %q: refused: fetch log: %v", p.Command, err)
			_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, 1))
			return
		}
		status := s.uploadPack(ch, p.Command, key)
		_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
		return
	}
}

func (s *SSHServer) uploadPack(ch ssh.Channel, command string, key ssh.PublicKey) uint32 {
	dir, err := s.authorize(command, key)
	if err != nil {
		s.Log.printf("ssh %q by %s: refused: %v", command, ssh.FingerprintSHA256(key), err)
		fmt.Fprintf(ch.Stderr(), "cc-ci git: %v\n", err)
		return 1
	}
	s.Log.printf("ssh git-upload-pack %s by %s", dir, ssh.FingerprintSHA256(key))
	cmd := exec.Command("git-upload-pack", "--strict", dir)
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 1
	}
	if err := cmd.Start(); err != nil {
		return 1
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _, _ = io.Copy(stdin, ch); _ = stdin.Close() }()
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return uint32(ee.ExitCode())
	}
	if err != nil {
		return 1
	}
	return 0
}

// authorize reads the command a git client sends (git-upload-pack
// '<repo>'; git-receive-pack and anything else refused) and returns the
// repo's directory if key is one of its deploy keys.
func (s *SSHServer) authorize(command string, key ssh.PublicKey) (string, error) {
	verb, arg, ok := strings.Cut(command, " ")
	if !ok || verb != "git-upload-pack" {
		return "", fmt.Errorf("read-only: only git-upload-pack is served")
	}
	arg = strings.Trim(arg, "'")
	repo, ok := repoOf(path.Clean("/" + arg))
	if !ok || repo != strings.Trim(path.Clean("/"+arg), "/") {
		return "", fmt.Errorf("no repository %q", arg)
	}
	dir := filepath.Join(s.Root, filepath.FromSlash(repo))
	if _, err := os.Lstat(filepath.Join(dir, s.DeployKeysFile)); err != nil {
		return "", fmt.Errorf("no repository %q readable over ssh", arg)
	}
	if s.TokenFile != "" {
		if _, err := os.Lstat(filepath.Join(dir, s.TokenFile)); errors.Is(err, os.ErrNotExist) {
			return dir, nil // public, as a forge serves a public repo to any key it knows
		}
	}
	if hasKey(filepath.Join(dir, s.DeployKeysFile), key) {
		return dir, nil
	}
	return "", fmt.Errorf("Permission denied: key %s may not read %q", ssh.FingerprintSHA256(key), arg)
}

// known says whether key is registered: a deploy key of a repo under Root
// (a directory named *.git, at most three levels down). Read at each
// authentication, as the deploy-keys files change with the lab's targets;
// symlinks are not followed.
func (s *SSHServer) known(key ssh.PublicKey) bool {
	found := false
	_ = filepath.WalkDir(s.Root, func(p string, d os.DirEntry, err error) error {
		switch {
		case err != nil:
			return nil // unreadable: nothing registered there
		case found:
			return filepath.SkipAll
		case !d.IsDir():
			return nil
		case strings.HasSuffix(d.Name(), ".git"):
			found = hasKey(filepath.Join(p, s.DeployKeysFile), key)
			return filepath.SkipDir
		}
		if rel, _ := filepath.Rel(s.Root, p); strings.Count(rel, string(filepath.Separator)) >= 2 {
			return filepath.SkipDir
		}
		return nil
	})
	return found
}

// hasKey says whether the authorized_keys file at p (a regular file, bounded)
// lists key.
func hasKey(p string, key ssh.PublicKey) bool {
	st, err := os.Lstat(p)
	if err != nil || !st.Mode().IsRegular() || st.Size() > 1<<20 {
		return false
	}
	keys, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	for rest := keys; len(bytes.TrimSpace(rest)) > 0; {
		var k ssh.PublicKey
		if k, _, _, rest, err = ssh.ParseAuthorizedKey(rest); err != nil {
			return false
		}
		if bytes.Equal(k.Marshal(), key.Marshal()) {
			return true
		}
	}
	return false
}
