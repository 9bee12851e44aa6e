package probe

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAlreadyThereIsWhatTheInstallDidNotHaveToMake(t *testing.T) {
	const (
		glibc  = "/nix/store/0a2bbz7y8hz1q6hlkgy4r6d2x7jyy5n9-glibc-2.40"
		system = "/nix/store/39qgrrwnr2sqhjndqdkz1cc2y9n86r3j-cc-ci-system-cc-ci"
		source = "/nix/store/n53dv1xdipq94qq92149waa87wyg1l24-source"
	)
	closure := []string{glibc, source, system}
	baseline := map[string]bool{glibc: true} // the blank image's own system needs it
	assert.Empty(t, AlreadyThere(closure, map[string]bool{glibc: true}, baseline), "a blank store")
	assert.Equal(t, []string{"n53dv1xdipq94qq92149waa87wyg1l24-source", "39qgrrwnr2sqhjndqdkz1cc2y9n86r3j-cc-ci-system-cc-ci"},
		AlreadyThere(closure, map[string]bool{glibc: true, source: true, system: true}, baseline), "a store that held the system")
}
