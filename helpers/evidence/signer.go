package evidence

import (
	"fmt"
	"os"

	"golang.org/x/crypto/ssh"

	"github.com/cc-ci/acceptance/helpers/localfile"
)

// LoadSigner reads the runner's signing key (CCCI_SIGNING_KEY): an
// unencrypted OpenSSH ed25519 private key that only its owner can read.
func LoadSigner(path string) (ssh.Signer, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key CCCI_SIGNING_KEY=%s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key CCCI_SIGNING_KEY=%s is readable by others (mode %04o): refusing; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := localfile.Read(path, 16<<10)
	if err != nil {
		return nil, fmt.Errorf("signing key CCCI_SIGNING_KEY: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("signing key CCCI_SIGNING_KEY=%s: %w", path, err)
	}
	if t := s.PublicKey().Type(); t != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("signing key CCCI_SIGNING_KEY=%s is %s, not ssh-ed25519", path, t)
	}
	return s, nil
}
