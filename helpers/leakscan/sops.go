package leakscan

// What inside a sops file is exempt from the scan: only its ENC[…] values.
// Every other byte is scanned, its sops: block included: what sops writes
// there (recipients, fingerprints, the data key's ciphertext, times) never
// holds a secret's bytes, so a secret found there was pasted in — under a
// key sops did not write, or under one it does (sops ignores both), and it
// travels in plaintext.

import (
	"bytes"
	"regexp"
)

// encValue is one sops-encrypted value.
var encValue = regexp.MustCompile(`ENC\[AES256_GCM,[^\]\s]*\]`)

// sopsSpans are the byte ranges of a sops file (recognised by its content,
// never its name) that are ciphertext: its ENC[…] values.
func sopsSpans(b []byte) [][2]int64 {
	if !looksSops(b) {
		return nil
	}
	var spans [][2]int64
	for _, m := range encValue.FindAllIndex(b, -1) {
		spans = append(spans, [2]int64{int64(m[0]), int64(m[1])})
	}
	return spans
}

func looksSops(b []byte) bool {
	return bytes.Contains(b, []byte("ENC[AES256_GCM,")) &&
		(bytes.Contains(b, []byte("\nsops:\n")) || bytes.Contains(b, []byte(`"sops": {`)))
}

// outsideSops keeps the findings that are not wholly inside a sops span of content.
func outsideSops(found []Finding, where string, content []byte) []Finding {
	spans := sopsSpans(content)
	if len(spans) == 0 {
		return found
	}
	var kept []Finding
	for _, f := range found {
		if f.Where != where || f.Problem != "" { // found inside what it decompresses to, or not a secret
			kept = append(kept, f)
			continue
		}
		inside := false
		for _, sp := range spans {
			if f.Offset >= sp[0] && f.Offset+f.Length <= sp[1] {
				inside = true
				break
			}
		}
		if !inside {
			kept = append(kept, f)
		}
	}
	return kept
}

// sopsProbe keeps the first bytes of an object to judge it a sops file.
type sopsProbe struct {
	buf   *bytes.Buffer
	limit int
}

func (p *sopsProbe) Write(b []byte) (int, error) {
	if room := p.limit - p.buf.Len(); room > 0 {
		p.buf.Write(b[:min(room, len(b))])
	}
	return len(b), nil
}
