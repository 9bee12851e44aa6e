// Package labtarget gives the harness's own tests the lab target's secrets.
// It is apart from labtest because it needs sops (through target): only the
// tests that scan for secrets pay for that dependency.
package labtarget

import (
	"context"
	"testing"
	"time"

	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/target"
)

// TargetSecrets fetches the configured target the way the harness does and
// returns every secret it has (the secrets repo's values, its read token, the
// bootstrap key) — what nothing the harness writes may contain.
func TargetSecrets(t testing.TB) map[string]string {
	t.Helper()
	c := labtest.Config(t)
	if !c.HasTarget() {
		labtest.Unavailable(t, "no target configured")
	}
	r := &redact.Redactor{}
	key, err := target.LoadAgeKey(c.AgeKeyFile, r)
	if err != nil {
		t.Fatalf("target key: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repos, err := target.Fetch(ctx, t.TempDir(), c.BaseRepoURL, c.SecretsRepoURL, key, r)
	if err != nil {
		t.Fatalf("fetch target: %v", err)
	}
	secrets, err := target.Secrets(repos, key, r)
	if err != nil {
		t.Fatalf("target secrets: %v", err)
	}
	return target.AllSecrets(repos, key, secrets)
}
