package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every CCCI_* key the harness's code reads (any non-test Go file of the
// module) is in docs/configuration.md, which claims to list them all.
func TestEveryKeyTheCodeReadsIsDocumented(t *testing.T) {
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	doc, err := os.ReadFile(filepath.Join(root, "docs/configuration.md"))
	require.NoError(t, err)
	key := regexp.MustCompile(`"(CCCI_[A-Z0-9_]*[A-Z0-9])`)
	read := map[string]string{} // key → a file that reads it
	require.NoError(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "out" || d.Name() == "dist") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range key.FindAllStringSubmatch(string(b), -1) {
			read[m[1]], _ = filepath.Rel(root, path)
		}
		return nil
	}))
	require.NotEmpty(t, read)
	for k, file := range read {
		assert.True(t, strings.Contains(string(doc), "`"+k+"`") || strings.Contains(string(doc), "`"+k+"="),
			"%s (read in %s) is not in docs/configuration.md", k, file)
	}
}
