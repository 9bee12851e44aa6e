package installdoctest

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Each row says where its document goes wrong: a want that names no line
// would let a parser that reports no position pass.
func TestEveryRowNamesTheLine(t *testing.T) {
	line := regexp.MustCompile(`install\.md:[0-9]+`)
	for _, doc := range MalformedDocs(t) {
		assert.NotEmpty(t, doc.Src, doc.Name)
		named := false
		for _, w := range doc.Want {
			named = named || line.MatchString(w)
		}
		assert.True(t, named, "%s: a wanted text names install.md:LINE (wants %q)", doc.Name, doc.Want)
	}
}
