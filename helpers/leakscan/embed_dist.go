//go:build ccci_dist

package leakscan

import _ "embed"

// embedded is the static scanner binary, built by `make dist` before the
// test binary that embeds it: the reviewer's binary needs no Go toolchain.
//
//go:embed dist/ccci-leakscan
var embedded []byte
