package machine

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/cc-ci/acceptance/helpers/config"
	"github.com/cc-ci/acceptance/helpers/incus"
)

// Every way an instance can fail to be provably ours is a refusal naming why.
func TestCheckClaimRefusesWhatIsNotProvablyOurs(t *testing.T) {
	l := Labels{Prefix: "ccci"}
	ours := func() *incus.Instance {
		return &incus.Instance{Name: "m", Project: "terraform-ci", Config: map[string]string{
			l.CreatedBy(): CreatedBy, l.RunID(): "r1", UUIDKey: "u-1"}}
	}
	claim := Claim{Project: "terraform-ci", Name: "m", RunID: "r1", UUID: "u-1"}
	assert.NoError(t, checkClaim(ours(), l, claim))
	noUUIDYet := claim
	noUUIDYet.UUID = ""
	assert.NoError(t, checkClaim(ours(), l, noUUIDYet), "while our own creation is in flight, labels and run id decide")

	rows := []struct {
		name   string
		mutate func(in *incus.Instance, c *Claim)
		want   string
	}{
		{"no created-by label", func(in *incus.Instance, _ *Claim) { delete(in.Config, l.CreatedBy()) }, "does not carry the label user.ccci.created-by"},
		{"someone else's created-by", func(in *incus.Instance, _ *Claim) { in.Config[l.CreatedBy()] = "terraform" }, "does not carry the label"},
		{"another run", func(in *incus.Instance, _ *Claim) { in.Config[l.RunID()] = "r2" }, `"r2" is not run r1`},
		{"no run id to check", func(_ *incus.Instance, c *Claim) { c.RunID = "" }, "no run id"},
		{"same name, another instance", func(in *incus.Instance, _ *Claim) { in.Config[UUIDKey] = "u-2" }, "a different instance under the same name"},
		{"answer for another project", func(in *incus.Instance, _ *Claim) { in.Project = "lichen" }, `project "lichen"`},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			in, c := ours(), claim
			row.mutate(in, &c)
			err := checkClaim(in, l, c)
			var oe *OwnershipError
			if assert.ErrorAs(t, err, &oe) {
				assert.Contains(t, err.Error(), row.want)
				assert.Contains(t, err.Error(), "left as it is")
			}
		})
	}
}

func TestVerifyOwnedRefusesProjectsOutsideTheAllowListBeforeAsking(t *testing.T) {
	g := config.Guardrails{AllowedProjects: []string{"terraform-ci"}}
	for _, project := range []string{"", "default", "lichen"} {
		// A nil client: the refusal must come before any request.
		_, err := VerifyOwned(t.Context(), nil, g, Labels{Prefix: "ccci"}, Claim{Project: project, Name: "m", RunID: "r1"})
		var oe *OwnershipError
		assert.ErrorAs(t, err, &oe, "project %q", project)
	}
}

func TestExpiryIsReadFailClosed(t *testing.T) {
	l := Labels{Prefix: "ccci"}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	in := func(exp string) *incus.Instance {
		return &incus.Instance{Name: "m", Project: "p", Config: map[string]string{l.CreatedBy(): CreatedBy, l.ExpiresAt(): exp}}
	}
	done, err := expired(in("2026-11-28T11:00:00Z"), l, now)
	assert.NoError(t, err)
	assert.True(t, done)
	done, err = expired(in("2026-11-28T13:00:00Z"), l, now)
	assert.NoError(t, err)
	assert.False(t, done)
	_, err = expired(in("tomorrow"), l, now)
	assert.ErrorContains(t, err, "not RFC 3339")
	_, err = expired(&incus.Instance{Name: "m", Config: map[string]string{l.ExpiresAt(): "2000-01-01T00:00:00Z"}}, l, now)
	assert.ErrorContains(t, err, "does not carry the label", "an unlabelled instance is never expired")
}

func TestOnlyStoppedInstancesAreLeftOutOfTheRAMSum(t *testing.T) {
	for _, s := range []string{"Running", "Frozen", "Starting", "Stopping", "Error", "Unknown", ""} {
		assert.True(t, usesRAM(s), "%q counts", s)
	}
	assert.False(t, usesRAM("Stopped"))
}

func TestRAMReportNamesNoOtherTenant(t *testing.T) {
	r := RAMReport{Terms: []RAMTerm{{Instance: "terraform-ci/cc-nix-test", Bytes: 4 << 30, Count: 1}},
		Others: RAMTerm{Bytes: 5 << 30, Count: 2}, New: 4 << 30, Total: 13 << 30, Cap: 12 << 30}
	s := r.String()
	assert.Equal(t, "terraform-ci/cc-nix-test 4GiB + 2 instance(s) in other projects 5GiB + new 4GiB = 13GiB > cap 12GiB", s)
	assert.False(t, strings.Contains(s, "lichen"))
}
