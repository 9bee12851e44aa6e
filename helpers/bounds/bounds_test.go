package bounds

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A wait inside another wait must be shorter than it: the table says so
// for the fixed ones (config checks the settings at load).
func TestNestedFixedWaitsFit(t *testing.T) {
	assert.Less(t, Command, Scan)
	for _, w := range Table {
		assert.Positive(t, w.D, w.What)
		assert.NotEmpty(t, w.What)
	}
}
