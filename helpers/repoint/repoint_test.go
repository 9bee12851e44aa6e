package repoint

import (
	"archive/tar"
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tree is a tar of files (and one symlink), as target.Repos.Trees makes it.
func tree(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, body := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "link.nix", Linkname: "instance.nix", Typeflag: tar.TypeSymlink}))
	require.NoError(t, tw.Close())
	return b.Bytes()
}

func read(t *testing.T, tarball []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, eachFile(tarball, func(name string, b []byte) error { out[name] = string(b); return nil }))
	return out
}

func TestAParameterIsSetWhereNixReadsAQuotedValue(t *testing.T) {
	base := tree(t, map[string]string{
		"instance.nix":       "{\n  domain = \"ci.example.net\";\n}\n",
		"modules/drone.nix":  "{ instance }: { host = \"drone.${instance.domain}\"; }\n", // a use, not a site
		"docs/install.md":    "Point \"ci.example.net\" at the gateway.\n",               // docs are not where it is set
		"params.json":        `{"gateway": "10.0.0.1", "other": "10.0.0.10"}`,
		"modules/proxy.toml": "gateway = \"10.0.0.1\"\n",
	})
	sites, err := Sites(base, "ci.example.net")
	require.NoError(t, err)
	require.Len(t, sites, 1)
	assert.Equal(t, "instance.nix:2", sites[0].String())

	sites, err = Sites(base, "10.0.0.1")
	require.NoError(t, err)
	var where []string
	for _, s := range sites {
		where = append(where, s.String())
	}
	assert.ElementsMatch(t, []string{"params.json:1", "modules/proxy.toml:1"}, where, "a copy is a second site; 10.0.0.10 is not one")

	sites, err = Sites(base, "nowhere.example")
	require.NoError(t, err)
	assert.Empty(t, sites)

	_, err = Sites(base, `a"b`)
	assert.ErrorContains(t, err, "cannot be searched for")
}

func TestARepointedCopyChangesTheSiteAndNothingElse(t *testing.T) {
	base := tree(t, map[string]string{
		"instance.nix":     "{\n  domain = \"ci.example.net\";\n  gateway = \"10.0.0.1\";\n}\n",
		"modules/dash.nix": "{ title = \"cc-ci on ci.example.net\"; }\n",
	})
	var changes []Change
	for _, p := range []Param{{"the domain", "ci.example.net"}, {"the gateway", "10.0.0.1"}} {
		sites, err := Sites(base, p.Value)
		require.NoError(t, err)
		require.Len(t, sites, 1)
		changes = append(changes, Change{Param: p, New: Fresh(p.Value), Site: sites[0]})
	}
	out, err := Repointed(base, changes)
	require.NoError(t, err)
	assert.True(t, bytes.HasSuffix(out, make([]byte, 1024)), "the archive ends with its trailer (two zero blocks), as tar(1) asks")
	files := read(t, out)
	assert.Equal(t, "{\n  domain = \""+changes[0].New+"\";\n  gateway = \""+changes[1].New+"\";\n}\n", files["instance.nix"])
	assert.Equal(t, "{ title = \"cc-ci on ci.example.net\"; }\n", files["modules/dash.nix"], "a literal copy is left as it is: the rebuild shows it")
	assert.NotContains(t, files, "link.nix", "a symlink is never read as a file")

	held, err := holding(base, "ci.example.net", changes[0].Site)
	require.NoError(t, err)
	assert.Equal(t, []string{"modules/dash.nix"}, held)

	// A site that is not where it was said to be is an error, not a silent copy.
	changes[0].Site.off++
	_, err = Repointed(base, changes)
	assert.ErrorContains(t, err, "is not at instance.nix:2")
}

func TestAFreshValueIsOfTheOldOnesKind(t *testing.T) {
	for old, kind := range map[string]func(string) bool{
		"10.0.0.1":       func(s string) bool { a, err := netip.ParseAddr(s); return err == nil && a.Is4() },
		"fd00::1":        func(s string) bool { a, err := netip.ParseAddr(s); return err == nil && a.Is6() },
		"ci.example.net": func(s string) bool { return strings.HasSuffix(s, ".invalid") },
	} {
		fresh := Fresh(old)
		assert.True(t, kind(fresh), "%s → %s", old, fresh)
		assert.NotEqual(t, old, fresh)
	}
}

func TestStorePaths(t *testing.T) {
	assert.Equal(t, "/nix/store/abc-x", storePathOf("/nix/store/abc-x/bin/y"))
	assert.Equal(t, "", storePathOf("/etc/x"))
}
