package probe

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Recorded from the lab (systemd 252): a converged oneshot and a running service.
const recorded = `Id=cc-ci-swarm.service
Type=oneshot
LoadState=loaded
ActiveState=active
SubState=exited
Result=success
ExecMainStatus=0

Id=cc-ci-proxy.service
Type=simple
LoadState=loaded
ActiveState=active
SubState=running
Result=success
ExecMainStatus=0
`

func TestParseUnitsRecordedOutput(t *testing.T) {
	us, err := ParseUnits(recorded, 2)
	require.NoError(t, err)
	assert.True(t, us[0].Converged())
	assert.True(t, us[1].Converged())
	assert.Equal(t, "cc-ci-proxy.service: load=loaded active=active sub=running result=success status=0 type=simple", us[1].String())
}

// Whatever the machine prints is input: malformed or hostile output is an
// error naming what was wrong, never a state or a message carrying it.
func TestParseUnitsRefusesMalformedOutput(t *testing.T) {
	rows := map[string]struct {
		out  string
		want string
	}{
		"fewer units than asked":       {recorded[:len(recorded)/2], "asked for 2 units, systemd described 1"},
		"a line that is not KEY=VALUE": {"Id=a.service\nnonsense\n\nId=b.service", "not KEY=VALUE"},
		"terminal escapes in a state":  {"Id=a.service\nActiveState=active\x1b[2J\n\nId=b.service", "unexpected ActiveState value"},
		"a newline-free injection":     {"Id=a.service\nResult=success; rm -rf /\n\nId=b.service", "unexpected Result value"},
		"status not a number":          {"Id=a.service\nExecMainStatus=zero\n\nId=b.service", "ExecMainStatus"},
		"a block without Id":           {"Type=oneshot\n\nId=b.service", "without Id"},
		"nothing at all":               {"", "not KEY=VALUE"},
	}
	for name, row := range rows {
		t.Run(name, func(t *testing.T) {
			_, err := ParseUnits(row.out, 2)
			require.Error(t, err)
			assert.Contains(t, err.Error(), row.want)
			assert.NotContains(t, err.Error(), "\x1b", "no raw escape reaches the message")
		})
	}
}
