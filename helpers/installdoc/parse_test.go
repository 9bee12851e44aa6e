package installdoc

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cc-ci/acceptance/helpers/installdoc/installdoctest"
)

var values = map[string]string{"BASE_REPO_URL": "http://git/cc-ci.git", "SECRETS_REPO_URL": "http://git/s.git",
	"MACHINE": "10.0.0.2", "DOMAIN": "ci.lab.test", "GATEWAY": "10.0.0.1"}

func TestTheTargetsInstallDocParses(t *testing.T) {
	src, err := os.ReadFile("../../fixtures/target/docs/install.md")
	require.NoError(t, err)
	doc, err := Parse("install.md", src, values)
	require.NoError(t, err)
	var steps []string
	for _, b := range doc.Blocks {
		steps = append(steps, b.Step+"@"+b.Runs)
	}
	assert.Equal(t, []string{"clone-base@machine", "prepare-key-dir@machine", "provision-age-key@operator",
		"clone-secrets@machine", "switch@machine"}, steps)
	assert.Equal(t, 1, doc.Examples)
	assert.Equal(t, "git clone http://git/cc-ci.git /root/cc-ci\n", doc.Step("clone-base").Body)
	assert.Contains(t, doc.Step("clone-base").Raw, "${BASE_REPO_URL}", "the raw body is kept for the record")
	assert.Contains(t, doc.Step("clone-secrets").Body, `"$token"`, "shell variables are not placeholders")
	assert.Len(t, doc.Manifest, 64)
	assert.Equal(t, 20, doc.Step("clone-base").Line)
}

func TestManifestChangesWithAnyBlock(t *testing.T) {
	a, err := Parse("a.md", []byte("```sh {step=one}\necho 1\n```\n"), nil)
	require.NoError(t, err)
	b, err := Parse("b.md", []byte("```sh {step=one}\necho 2\n```\n"), nil)
	require.NoError(t, err)
	c, err := Parse("c.md", []byte("```sh {step=one runs=operator}\necho 1\n```\n"), nil)
	require.NoError(t, err)
	assert.NotEqual(t, a.Manifest, b.Manifest)
	assert.NotEqual(t, a.Manifest, c.Manifest)
}

// Every malformed document is refused before anything runs, naming the line.
// The table is testdata/malformed: NAME.md is read as install.md, NAME.want
// holds what the error must say (cmd/ccci's lint-install reads the same table).
func TestMalformedDocumentsNameTheLine(t *testing.T) {
	for _, doc := range installdoctest.MalformedDocs(t) {
		t.Run(doc.Name, func(t *testing.T) {
			_, err := Parse("install.md", doc.Src, values)
			require.Error(t, err)
			for _, w := range doc.Want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestOtherLanguagesAreNotSteps(t *testing.T) {
	doc, err := Parse("x.md", []byte("```yaml {run=no}\nkey: ${NOT_CHECKED}\n```\n\n```sh {step=a}\ntrue\n```\n"), nil)
	require.NoError(t, err)
	assert.Len(t, doc.Blocks, 1)
	assert.Equal(t, 1, doc.Examples, "the data block is an example")
}

func TestAllErrorsAreReportedTogether(t *testing.T) {
	_, err := Parse("install.md", []byte("```sh\na\n```\n\n```sh {step=b}\n${X}\n```\n"), nil)
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "without a tag") && strings.Contains(err.Error(), "${X}"), err.Error())
}

// A run parses install.md once, before the machine exists, and fills in the
// machine's address when it is known: the blocks, their hashes and the
// manifest stay those of the document as written.
func TestTheMachinesAddressIsFilledInLater(t *testing.T) {
	src := []byte("```sh {step=ping}\nping -c1 ${MACHINE}\n```\n")
	standIn := map[string]string{"MACHINE": "machine.invalid"}
	doc, err := Parse("install.md", src, standIn)
	require.NoError(t, err)
	filled, err := doc.Filled(map[string]string{"MACHINE": "10.0.0.7"})
	require.NoError(t, err)
	assert.Equal(t, "ping -c1 10.0.0.7\n", filled.Step("ping").Body)
	assert.Equal(t, "ping -c1 machine.invalid\n", doc.Step("ping").Body, "the parsed document is not changed")
	assert.Equal(t, doc.Manifest, filled.Manifest)
	assert.Equal(t, doc.Step("ping").SHA256, filled.Step("ping").SHA256)

	_, err = doc.Filled(map[string]string{})
	var perr *ParseError
	require.ErrorAs(t, err, &perr)
	assert.Equal(t, 1, perr.Line)
	assert.Contains(t, perr.Msg, "${MACHINE}")
}
