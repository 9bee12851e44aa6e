package sopsmeta

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestOnlyWhatSopsWritesIsAField(t *testing.T) {
	for _, f := range []string{"mac", "lastmodified", "version", "age", "recipient", "enc", "unencrypted_suffix", "key_groups"} {
		assert.True(t, IsField(f), f)
	}
	for _, f := range []string{"registry_password_backup", "MAC", "notes", ""} {
		assert.False(t, IsField(f), f)
	}
}
