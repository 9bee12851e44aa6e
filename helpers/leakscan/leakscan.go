// Package leakscan finds KNOWN secrets — the target's own, decrypted in
// memory — wherever they might have leaked: every object of a git repo, a
// directory tree, a machine's /nix/store. It searches every form a secret
// takes when it leaks (raw, DER, hex, base64 at any alignment, wrapped or
// not, URL-safe, escaped in a JSON, .drv or .nix string, UTF-16,
// percent-encoded; inside gzip, xz, zstd and bzip2 streams) in one
// multi-pattern pass. A file it cannot read is a finding too.
// Findings name the secret and the form, never the bytes.
//
// Each scan proves itself: it plants a canary (a random needle) where it
// scans and fails unless it finds it.
package leakscan

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/bounds"
	"github.com/cc-ci/acceptance/helpers/remote"
)

// Report is what the scanner binary prints.
type Report struct {
	Findings []Finding `json:"findings"`
	Stats    []Stats   `json:"stats"` // one per directory
	Error    string    `json:"error,omitempty"`
}

// BinaryPackage is the scanner run on machines.
const BinaryPackage = "github.com/cc-ci/acceptance/helpers/leakscan/cmd/ccci-leakscan"

// Binary puts the static scanner binary into dir: the one embedded in this
// binary (`make dist`), or else one built with `go build`. how says which,
// for the run's evidence.
func Binary(ctx context.Context, dir string) (path, how string, err error) {
	if len(embedded) > 0 {
		path = filepath.Join(dir, "ccci-leakscan")
		if err := os.WriteFile(path, embedded, 0o700); err != nil {
			return "", "", fmt.Errorf("leakscan: %w", err)
		}
		return path, fmt.Sprintf("embedded in this binary (%d bytes), no build", len(embedded)), nil
	}
	start := time.Now()
	path, err = BuildBinary(ctx, dir)
	return path, "built with go build in " + time.Since(start).Round(time.Millisecond).String(), err
}

// BuildBinary builds the static scanner binary into dir.
func BuildBinary(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "ccci-leakscan")
	// Static, in the build configuration make exports (no -trimpath): under
	// make test it links from packages already compiled.
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, BinaryPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("leakscan: build %s: %v: %s", BinaryPackage, err, b)
	}
	return out, nil
}

// Remote runs the scanner on the machine, where the data is: the binary goes
// to a private tmpfs directory, the needles go over stdin, the report comes
// back as JSON; the directory is removed afterwards. walk says which files
// under dirs are read; the scan gets timeout (CCCI_SCAN_TIMEOUT).
func Remote(ctx context.Context, cl *remote.Client, binary string, dirs []string, walk Walk, needles []Needle, timeout time.Duration) (*Report, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	res, err := cl.RunInput(ctx, `base=/dev/shm; [ -d "$base" ] || base=/tmp
d=$(mktemp -d "$base/ccci-leakscan.XXXXXX"); cat >"$d/scan"; chmod 700 "$d/scan"; echo "$d"`, bin, bounds.Scan)
	if err != nil {
		return nil, fmt.Errorf("leakscan: copy the scanner to the machine: %w", err)
	}
	dir := strings.TrimSpace(string(res.Stdout))
	defer func() { _, _ = cl.Run(context.WithoutCancel(ctx), "rm -rf "+remote.ShellQuote(dir), bounds.Cleanup) }()
	in, err := json.Marshal(needles)
	if err != nil {
		return nil, err
	}
	var args []string
	if walk.ReadableByOthers {
		args = append(args, "-readable-by-others")
	}
	for _, s := range walk.Skip {
		args = append(args, "-skip", remote.ShellQuote(s))
	}
	if walk.MaxBytes > 0 {
		args = append(args, "-max-bytes", fmt.Sprint(walk.MaxBytes))
	}
	if walk.Processes {
		args = append(args, "-processes")
	}
	args = append(args, "--")
	for _, d := range dirs {
		args = append(args, remote.ShellQuote(d))
	}
	res, err = cl.RunInput(ctx, remote.ShellQuote(dir+"/scan")+" "+strings.Join(args, " "), in, timeout)
	var rep Report
	if res != nil && len(res.Stdout) > 0 {
		if jerr := json.Unmarshal(res.Stdout, &rep); jerr != nil {
			return nil, fmt.Errorf("leakscan: scanner report: %w", jerr)
		}
	}
	if rep.Error != "" {
		return &rep, fmt.Errorf("leakscan on the machine: %s", rep.Error)
	}
	if err != nil {
		return &rep, fmt.Errorf("leakscan on the machine: %w", err)
	}
	return &rep, nil
}
