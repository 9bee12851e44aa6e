//go:build !ccci_dist

package leakscan

// embedded is empty outside `make dist`: the scanner is built on first use.
var embedded []byte
