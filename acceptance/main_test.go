// Package acceptance proves the definition of done of cc-ci Phase 1c
// (../shared/seed/phase1c-plan.md §3) on a brand-new throwaway machine.
// Each test reads as the plan's sentence; the mechanics live in helpers/.
//
//	CCCI_ACCEPTANCE=1 go test ./acceptance            # against the lab (make lab-up)
//	CCCI_ACCEPTANCE=1 go test ./acceptance -run TestC4
package acceptance

import (
	"os"
	"testing"

	"github.com/cc-ci/acceptance/helpers/testrun"
)

// run is this go test run: its config, its Incus client and its one machine.
var run *testrun.Run

func TestMain(m *testing.M) { os.Exit(testrun.Main(m, &run)) }
