package acceptance

import (
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/cc-ci/acceptance/helpers/installdoc"
	"github.com/cc-ci/acceptance/helpers/judge"
)

// C2 — Cert in git. The wildcard cert+key are sops secrets in the secrets
// repo, decrypted at activation to the cert path; the "operator drops a cert
// file" step is gone; a rebuild serves valid TLS from the git-sourced cert.
func TestC2CertInGit(t *testing.T) {
	view := run.Target(t)
	cfg := run.Config

	run.Sentence(t, "the certificate in git is usable for the domain", func(t *testing.T) {
		judge.None(t, judge.Certificate(view.Secrets, cfg.Target.Domain, cfg.Expect.CertMinDays, time.Now()), judge.CertificateInGit)
	})

	run.Sentence(t, "no install step brings a certificate from outside git", func(t *testing.T) {
		for _, b := range view.Doc.Blocks {
			if touchesCert.MatchString(b.Raw) {
				assert.NotEqual(t, installdoc.Operator, b.Runs, "operator step %q (%s:%d) handles certificate files", b.Step, view.Doc.Path, b.Line)
				assert.Fail(t, "install step writes certificate files by hand",
					"step %q (%s:%d): the certificate must come from activation, not a manual step", b.Step, view.Doc.Path, b.Line)
			}
		}
	})

	run.Sentence(t, "the rebuilt machine serves TLS from the cert in git", func(t *testing.T) {
		m := run.Installed(t)
		assertCertFilesFromGit(t, m, view)
		assertServesGitCert(t, m, view)
	})
}

// touchesCert matches a block that handles certificate files itself.
var touchesCert = regexp.MustCompile(`(?i)(ci-certs|fullchain|privkey|\.pem\b|\.crt\b)`)
