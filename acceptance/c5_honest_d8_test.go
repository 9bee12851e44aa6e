package acceptance

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/evidence"
	"github.com/cc-ci/acceptance/helpers/judge"
	"github.com/cc-ci/acceptance/helpers/target"
)

// C5 — Honest D8. The D8 evidence, as committed in the base repo, has a
// static part (byte-identical closure) and a live part (the throwaway
// rebuild) whose every cited run is one of this harness that passed C4 on a
// machine it created, re-verified within CCCI_D8_MAX_AGE; the "infeasible by design"
// wording is gone. The harness judges only what the target committed, and
// the run it cites as the evidence chain (CCCI_D8_CHAIN) recorded it; its own
// live record goes under CCCI_OUT_DIR (C4), never into the target's clone.
// A citation is bound to what it proves: the cited entry is signed by a key
// of CCCI_D8_ALLOWED_SIGNERS, ran on this Incus, and judged this base — the
// commit installed now, or an ancestor with only the D8 document changed.
func TestC5HonestD8(t *testing.T) {
	view := run.Target(t)
	cfg := run.Config
	doc, err := target.ReadBase(view.Repos, target.D8Doc)
	require.NoError(t, err, "the base has %s", target.D8Doc)
	_, live := target.D8Parts(doc)
	problems := judge.D8Document(doc, cfg.Expect.ForbiddenPhrases)

	run.Sentence(t, "the static part states the byte-identical closure", func(t *testing.T) {
		judge.None(t, problems, judge.D8StaticMissing)
	})

	run.Sentence(t, "the live part cites a recent cold run that passed C4", func(t *testing.T) {
		if !judge.None(t, problems, judge.D8LiveMissing) {
			return
		}
		cited := evidence.CitedRuns(live)
		require.NotEmpty(t, cited, "%s's live part cites a run of the harness (its id, r<date>t<time>-<hex>)", target.D8Doc)
		chain, err := evidence.Chain(cfg.Evidence.D8Chain)
		require.NoError(t, err, "the evidence chain CCCI_D8_CHAIN")
		require.NotEmpty(t, cfg.Evidence.D8Signers, "CCCI_D8_ALLOWED_SIGNERS names the keys whose runs may be cited: without it no citation can be trusted")
		allowed, err := evidence.LoadAllowedSigners(cfg.Evidence.D8Signers)
		require.NoError(t, err, "CCCI_D8_ALLOWED_SIGNERS")
		bind := evidence.Binding{Incus: run.Incus.Endpoint, IncusCert: run.IncusCert, Allowed: allowed}
		// Every cited run must hold: a passing run of C4 on a machine it
		// created, recently, on this Incus, signed by a trusted key — and of
		// this target: the commit installed now, or one before it with only
		// the D8 document changed since. One honest citation does not carry
		// a fabricated one.
		var bad []string
		for _, id := range cited {
			e, err := evidence.ProvesLiveRebuildFor(chain, id, time.Now(), cfg.Evidence.D8MaxAge, bind)
			if err == nil {
				err = target.OnlyChangedSince(run.Context(), view.Repos, e.BaseCommit, target.D8Doc)
			}
			if err != nil {
				bad = append(bad, "run "+id+": "+strings.TrimPrefix(err.Error(), "run "+id+": "))
				continue
			}
			run.Note("D8 live run", "%s cites run %s of %s: C4 passed on %s (base %.12s), recorded %s, signed by %s",
				target.D8Doc, id, cfg.Evidence.D8Chain, e.Machine, e.BaseCommit, e.Time, e.Signer)
		}
		assert.Empty(t, bad, "every run %s cites must be a signed pass of C4 on a machine it created within %s in %s, on this Incus, of this base",
			target.D8Doc, cfg.Evidence.D8MaxAge, cfg.Evidence.D8Chain)
	})

	run.Sentence(t, "the infeasible wording is gone", func(t *testing.T) {
		judge.None(t, problems, judge.D8ForbiddenPhrase)
	})
}
