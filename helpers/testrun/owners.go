package testrun

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// The two failures every other check depends on, and the test whose
// sentence each breaks. That test fails on it; every other test that needs
// the target (or the installed machine) skips, naming the cause — one defect
// reads as one failure, not six. The run fails either way (Main).
const (
	// "every required secret is in git, encrypted": a tampered MAC, a
	// plaintext value, a file the key cannot open.
	secretsOwner = "TestC3AllSecretsInGitOneException"
	// "install.md, followed exactly, must succeed".
	installOwner = "TestC4GenuineLiveRebuild"
	// An install that needs an operator step besides the age key: "with
	// only the age key, the install succeeds" (also C3).
	outOfBandOwner = secretsOwner
)

// ownedError is a failure attributed to the test whose sentence it breaks.
type ownedError struct {
	owner string
	err   error
}

func (e *ownedError) Error() string { return e.err.Error() }

func (e *ownedError) Unwrap() error { return e.err }

// blocked fails t with err when t owns it (or nobody does), and skips it
// otherwise, saying what it could not judge and which test fails instead.
func blocked(t testing.TB, what string, err error) {
	t.Helper()
	var owned *ownedError
	if errors.As(err, &owned) && topLevel(t.Name()) != owned.owner {
		t.Skipf("cannot judge: %s: %v (%s fails on it)", what, err, owned.owner)
	}
	t.Fatalf("%s: %v", what, err)
}

func topLevel(name string) string { top, _, _ := strings.Cut(name, "/"); return top }

// blockingError is the target or install failure that decided the run, if any.
func (r *Run) blockingError() error {
	if r.tgt.err != nil {
		return fmt.Errorf("the target does not load: %w", r.tgt.err)
	}
	if in := r.install.done; in != nil && in.Err != nil {
		return fmt.Errorf("the install failed: %w", in.Err)
	}
	if refused := (*refusedError)(nil); errors.As(r.stage.err, &refused) {
		return refused
	}
	return nil
}
