package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// An sshd that accepts TCP and then never speaks must not hold the caller:
// the handshake ends at the dial timeout, naming the address.
func TestHandshakeWithAStalledServerEndsAtTheDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // accepted, never answered
		}
	}()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)

	start := time.Now()
	_, err = Dial(context.Background(), Config{Addr: ln.Addr().String(), Signer: signer, HostKey: signer.PublicKey(),
		Timeout: 300 * time.Millisecond})
	require.Error(t, err)
	assert.Less(t, time.Since(start), 5*time.Second, "bounded by the dial timeout")
	assert.Contains(t, err.Error(), "ssh handshake with root@"+ln.Addr().String())

	// A cancelled context ends it too, before the timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = Dial(ctx, Config{Addr: ln.Addr().String(), Signer: signer, HostKey: signer.PublicKey(), Timeout: time.Minute})
	require.Error(t, err)
	assert.Less(t, time.Since(start), 5*time.Second, "bounded by the context")
}
