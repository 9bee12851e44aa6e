package localfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadRefusesWhatIsNotABoundedRegularFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(file, []byte("12345"), 0o600))
	b, err := Read(file, 5)
	require.NoError(t, err)
	assert.Equal(t, "12345", string(b))

	_, err = Read(file, 4)
	assert.ErrorContains(t, err, "larger than 4 bytes")
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(file, link))
	_, err = Read(link, 5)
	assert.Error(t, err, "a symlink is not followed")
	_, err = Read(dir, 5)
	assert.ErrorContains(t, err, "not a regular file")
	_, err = Read(filepath.Join(dir, "missing"), 5)
	assert.ErrorIs(t, err, os.ErrNotExist)
}
