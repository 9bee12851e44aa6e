// Package labtarget gives the harness's own tests the lab target's secrets.
// It is apart from labtest because it needs sops (through target): only the
// tests that scan for secrets pay for that dependency.
package labtarget

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cc-ci/acceptance/fixtures"
	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/gitserver"
	"github.com/cc-ci/acceptance/helpers/labtest"
	"github.com/cc-ci/acceptance/helpers/redact"
	"github.com/cc-ci/acceptance/helpers/target"
)

// TargetSecrets fetches the configured target the way the harness does and
// returns every secret it has (the secrets repo's values, its read token, the
// bootstrap key) — what nothing the harness writes may contain.
func TargetSecrets(t testing.TB) map[string]string {
	t.Helper()
	return TargetSecretsWith(t, nil)
}

// TargetSecretsWith is TargetSecrets for the target the configuration
// names once settings (KEY=value, as a run's environment takes them)
// override it: another lab target, with the settings it needs.
func TargetSecretsWith(t testing.TB, settings []string) map[string]string {
	t.Helper()
	over := map[string]string{}
	for _, kv := range settings {
		k, v, _ := strings.Cut(kv, "=")
		over[k] = v
	}
	c, err := config.LoadFrom(func(k string) (string, bool) {
		if v, ok := over[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	})
	if err != nil {
		labtest.Unavailable(t, err.Error())
	}
	if !c.HasTarget() {
		labtest.Unavailable(t, "no target configured")
	}
	r := &redact.Redactor{}
	key, err := target.LoadAgeKey(c.Target.AgeKeyFile, r)
	if err != nil {
		t.Fatalf("target key: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repos, err := target.Fetch(ctx, t.TempDir(), c.Target, key, r)
	if err != nil {
		t.Fatalf("fetch target: %v", err)
	}
	secrets, err := target.Secrets(repos, key, r)
	if err != nil {
		t.Fatalf("target secrets: %v", err)
	}
	return target.AllSecrets(repos, key, secrets)
}

// Served generates a fresh good target (new keys) and serves its repos over
// HTTP with the real git backend, as the lab does, for tests that need a
// target but no lab: it returns the target and the base and secrets URLs.
// With a defect named, the target served is that defect of the good one.
// Without git, nix or git-http-backend (make lab-up installs them) the
// test is skipped, or fails with CCCI_REQUIRE_LAB=1.
func Served(t testing.TB, defect ...string) (tg *fixtures.Target, baseURL, secretsURL string) {
	t.Helper()
	for _, tool := range []string{"git", "nix", gitserver.DefaultBackend} {
		if _, err := exec.LookPath(tool); err != nil {
			labtest.Unavailable(t, tool+" not installed (make lab-up installs it)")
		}
	}
	root := t.TempDir()
	tg, err := fixtures.Generate(fixtures.Options{Dir: filepath.Join(root, "good"), Domain: "ci.lab.test", Gateway: "10.99.0.1",
		SecretsInputURL: "git+file:///root/cc-ci-secrets", Now: time.Now()})
	if err != nil {
		t.Fatalf("generate a target: %v", err)
	}
	name := "good"
	for _, d := range defect {
		if tg, err = fixtures.GenerateDefect(tg, d, filepath.Join(root, d)); err != nil {
			t.Fatalf("generate defect %s: %v", d, err)
		}
		name = d
	}
	srv := httptest.NewServer(&gitserver.Server{Root: root, TokenFile: fixtures.TokenFile, Log: t.Logf})
	t.Cleanup(srv.Close)
	return tg, gitserver.URL(srv.URL, name+"/cc-ci.git"), gitserver.URL(srv.URL, name+"/cc-ci-secrets.git")
}
