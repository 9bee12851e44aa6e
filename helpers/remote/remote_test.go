package remote

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/redact"
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
	signer, _, err := NewKey()
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

// Redaction comes before the cut: a secret straddling the edge of the tail
// must not leave its end behind.
func TestTailRedactsBeforeCutting(t *testing.T) {
	r := &redact.Redactor{}
	secret := "s3cr3t-value-0123456789abcdef"
	r.Add("token", []byte(secret))
	out := []byte("journal: token=" + secret + " end")
	for n := 1; n < len(out); n++ {
		tail := Tail(r, out, n)
		for k := redact.MinLen; k <= len(secret); k++ {
			assert.NotContains(t, tail, secret[len(secret)-k:], "n=%d leaks the secret's last %d bytes", n, k)
		}
	}
	assert.Equal(t, "journal: token=[REDACTED token "+r.Fingerprint([]byte(secret))+"] end", Tail(r, out, 1000))
}

// Output beyond the bound is dropped (and counted), never buffered.
func TestOutputIsBounded(t *testing.T) {
	var b lockedBuffer
	chunk := make([]byte, 1<<20)
	for i := 0; i < MaxOutput>>20+3; i++ {
		n, err := b.Write(chunk)
		require.NoError(t, err)
		require.Equal(t, len(chunk), n)
	}
	got := b.Bytes()
	assert.Less(t, len(got), MaxOutput+200)
	assert.Contains(t, string(got[MaxOutput:]), "3145728 more bytes dropped")
}
