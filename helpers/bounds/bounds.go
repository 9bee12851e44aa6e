// Package bounds is every fixed wait of the harness in one table: the
// bounds that are not settings (the settings are config.Timeouts). Each
// runs inside a wait that is a setting, named in Within; config checks at
// load that the setting holds it, so lowering a setting below what it
// contains is refused with both named instead of cutting a wait short.
package bounds

import "time"

const (
	Connect = 20 * time.Second // the first answer of the Incus API
	API     = 2 * time.Minute  // one Incus API request, when its caller set no deadline
	Dial    = 10 * time.Second // one SSH or TLS dial
	Page    = 10 * time.Second // one HTTPS request to a served name, its redirects and its body included
	Command = 10 * time.Second // one read-only probe command on the machine (systemctl show, sha256sum of a file)
	Scan    = 2 * time.Minute  // a probe command that walks the store or the disk
	Traffic = 20 * time.Second // reading the run's record of the machine's traffic at the teardown (nft, local)
	Reuse   = time.Minute      // checking a kept machine (SKIP_provision) through Incus
	Git     = 30 * time.Second // one git command on a local clone of the target (cat-file, ls-tree)
	Destroy = time.Minute      // stopping and deleting one machine and proving it gone
	Cleanup = time.Minute      // removing what the harness put on the machine (a temp dir)
	Kill    = 10 * time.Second // a child process (guardian, nft) to end after it was told to
	Checks  = 5 * time.Minute  // ccci doctor's checks of the host, besides fetching the target (CCCI_STEP_TIMEOUT)
)

// Wait is one row of the table.
type Wait struct {
	What   string
	D      time.Duration
	Within string // the setting (CCCI_*) whose wait contains it; "" for go test's -timeout alone
}

// Table is every fixed wait, with the setting that contains it.
var Table = []Wait{
	{"the first answer of the Incus API", Connect, ""},
	{"one Incus API request", API, ""},
	{"one SSH or TLS dial", Dial, "CCCI_BOOT_TIMEOUT"},
	{"one HTTPS request to a served name", Page, "CCCI_CONVERGE_TIMEOUT"},
	{"one probe command on the machine", Command, "CCCI_CONVERGE_TIMEOUT"},
	{"a probe that walks the store or the disk", Scan, ""},
	{"reading the record of the machine's traffic at the teardown", Traffic, "CCCI_TEARDOWN_RESERVE"},
	{"checking a kept machine", Reuse, ""},
	{"one git command reading the target", Git, "CCCI_STEP_TIMEOUT"},
	{"stopping and deleting a machine and proving it gone", Destroy, "CCCI_TEARDOWN_RESERVE"},
	{"removing the harness's files from the machine", Cleanup, "CCCI_TEARDOWN_RESERVE"},
	{"a child process to end", Kill, "CCCI_TEARDOWN_RESERVE"},
	{"ccci doctor's checks of the host", Checks, ""},
}

// Longest is the longest fixed wait the setting within holds (0 if none).
func Longest(within string) time.Duration {
	var d time.Duration
	for _, w := range Table {
		if w.Within == within {
			d = max(d, w.D)
		}
	}
	return d
}
