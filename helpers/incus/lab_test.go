package incus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/incus"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/wait"
)

// Against the real lab incusd, over both transports: the same calls must work
// on the unix socket and over HTTPS with the trusted client certificate.
func TestLabLifecycleOverBothTransports(t *testing.T) {
	for _, transport := range []string{"unix", "https"} {
		t.Run(transport, func(t *testing.T) {
			c, cfg := labtest.Client(t, transport)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()

			srv, err := c.Server(ctx)
			require.NoError(t, err)
			assert.Equal(t, "trusted", srv.Auth)

			projects, err := c.Projects(ctx)
			require.NoError(t, err)
			assert.True(t, hasProject(projects, cfg.Machine.Project), "project %s exists", cfg.Machine.Project)

			alias, err := c.ImageAlias(ctx, cfg.Machine.Project, cfg.Machine.Image)
			require.NoError(t, err)
			assert.NotEmpty(t, alias.Target)

			_, err = c.ImageAlias(ctx, cfg.Machine.Project, "no-such-alias")
			require.ErrorIs(t, err, incus.ErrNotFound)

			name := fmt.Sprintf("ccci-clienttest-%s-%d", transport, time.Now().UnixNano()%1e6)
			require.NoError(t, c.CreateInstance(ctx, incus.InstanceSpec{Name: name, Project: cfg.Machine.Project, Type: incus.Container,
				ImageAlias: cfg.Machine.Image, Config: map[string]string{"limits.memory": "256MiB", "user.ccci.created-by": "cc-ci-acceptance",
					"user.ccci.expires-at": time.Now().Add(10 * time.Minute).UTC().Format(time.RFC3339)}}))
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_ = c.SetState(ctx, cfg.Machine.Project, name, "stop", true)
				_ = c.DeleteInstance(ctx, cfg.Machine.Project, name)
			})
			require.NoError(t, c.SetState(ctx, cfg.Machine.Project, name, "start", false))

			in, err := c.Instance(ctx, cfg.Machine.Project, name)
			require.NoError(t, err)
			assert.Equal(t, "Running", in.Status)
			assert.Equal(t, "256MiB", in.Config["limits.memory"])

			all, err := c.Instances(ctx, "")
			require.NoError(t, err)
			assert.True(t, hasInstance(all, cfg.Machine.Project, name), "all-projects listing shows the new instance with its project")

			// A container that has just started can report 0 bytes for a moment
			// (its cgroup is not yet charged): wait for the first real figure.
			require.NoError(t, wait.Eventually(ctx, "instance state with memory usage", 30*time.Second, func(bool) error {
				st, err := c.State(ctx, cfg.Machine.Project, name)
				if err != nil {
					return wait.Stop(err)
				}
				if st.Status != "Running" {
					return wait.Stop(fmt.Errorf("status %q, want Running", st.Status))
				}
				if st.Memory.Usage <= 0 {
					return fmt.Errorf("memory usage %d", st.Memory.Usage)
				}
				return nil
			}))

			res, err := c.Exec(ctx, cfg.Machine.Project, name, []string{"sh", "-c", "echo out; echo err >&2; exit 7"}, nil)
			require.NoError(t, err)
			assert.Equal(t, 7, res.ExitCode)
			assert.Equal(t, "out\n", string(res.Stdout))
			assert.Equal(t, "err\n", string(res.Stderr))

			require.NoError(t, c.PushFile(ctx, cfg.Machine.Project, name, incus.FileSpec{Path: "/root/pushed", Mode: 0o600, Data: []byte("hello\n")}))
			res, err = c.Exec(ctx, cfg.Machine.Project, name, []string{"stat", "-c", "%a %u %s", "/root/pushed"}, nil)
			require.NoError(t, err)
			assert.Equal(t, "600 0 6", strings.TrimSpace(string(res.Stdout)))
			got, err := c.PullFile(ctx, cfg.Machine.Project, name, "/root/pushed")
			require.NoError(t, err)
			assert.Equal(t, "hello\n", string(got))

			require.NoError(t, c.SetState(ctx, cfg.Machine.Project, name, "stop", true))
			require.NoError(t, c.DeleteInstance(ctx, cfg.Machine.Project, name))
			_, err = c.Instance(ctx, cfg.Machine.Project, name)
			require.ErrorIs(t, err, incus.ErrNotFound)
		})
	}
}

func hasProject(ps []incus.Project, name string) bool {
	for _, p := range ps {
		if p.Name == name {
			return true
		}
	}
	return false
}

func hasInstance(ins []incus.Instance, project, name string) bool {
	for _, in := range ins {
		if in.Project == project && in.Name == name {
			return true
		}
	}
	return false
}
