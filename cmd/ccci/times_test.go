package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The summary is go test -json's own events: packages slowest first, each
// with its tests and their direct subtests (the matrix's rows), deeper
// subtests (a row's sentences) left out; a line that is not an event is
// an error naming the file and line.
func TestTimesSummarisesGoTestJSON(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "lab.json")
	require.NoError(t, os.WriteFile(good, []byte(strings.Join([]string{
		`{"Action":"run","Package":"m/defects","Test":"TestEveryDefect"}`,
		`{"Action":"output","Package":"m/defects","Test":"TestEveryDefect","Output":"x\n"}`,
		`{"Action":"pass","Package":"m/defects","Test":"TestEveryDefect/good/deeper","Elapsed":1}`,
		`{"Action":"pass","Package":"m/defects","Test":"TestEveryDefect/good","Elapsed":40.04}`,
		`{"Action":"fail","Package":"m/defects","Test":"TestEveryDefect/drift","Elapsed":55}`,
		`{"Action":"fail","Package":"m/defects","Test":"TestEveryDefect","Elapsed":95.2}`,
		`{"Action":"fail","Package":"m/defects","Elapsed":96}`,
		`{"Action":"pass","Package":"m/fast","Test":"TestA","Elapsed":0.5}`,
		`{"Action":"pass","Package":"m/fast","Elapsed":1.2}`,
	}, "\n")+"\n"), 0o644))
	var out, errb bytes.Buffer
	require.Equal(t, 0, timesCmd([]string{good}, &out, &errb), errb.String())
	got := out.String()
	for _, want := range []string{"96.0s fail   m/defects", "95.2s fail     TestEveryDefect\n", "55.0s fail       TestEveryDefect/drift", "40.0s pass       TestEveryDefect/good\n", "1.2s pass   m/fast", "97.2s        the packages' sum"} {
		assert.Contains(t, got, want)
	}
	assert.NotContains(t, got, "deeper", "a row's sentences are not rows")
	assert.Less(t, strings.Index(got, "m/defects"), strings.Index(got, "m/fast"), "slowest package first")
	assert.Less(t, strings.Index(got, "/drift"), strings.Index(got, "/good"), "slowest row first")

	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"Action":"pass"}`+"\nPASS\n"), 0o644))
	errb.Reset()
	assert.Equal(t, 2, timesCmd([]string{bad}, &out, &errb))
	assert.Contains(t, errb.String(), "bad.json line 2: not a go test -json event")
}
