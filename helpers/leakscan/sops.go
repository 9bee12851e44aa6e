package leakscan

// What inside a sops file is exempt from the scan: only its ENC[…] values
// and its sops metadata block; every other byte is scanned.

import (
	"bytes"
	"regexp"
)

// encValue is one sops-encrypted value.
var encValue = regexp.MustCompile(`ENC\[AES256_GCM,[^\]\s]*\]`)

// sopsSpans are the byte ranges of a sops file (recognised by its content,
// never its name) that are ciphertext or sops's own metadata: its ENC[…]
// values and its top-level `sops:` block. Everything else — keys, comments,
// values sops left unencrypted, text pasted beside them — is scanned.
func sopsSpans(b []byte) [][2]int64 {
	if !looksSops(b) {
		return nil
	}
	var spans [][2]int64
	for _, m := range encValue.FindAllIndex(b, -1) {
		spans = append(spans, [2]int64{int64(m[0]), int64(m[1])})
	}
	if i := bytes.Index(b, []byte("\nsops:\n")); i >= 0 {
		// YAML: the block runs while lines are indented (or empty).
		end := len(b)
		for j := i + len("\nsops:\n"); j < len(b); {
			nl := bytes.IndexByte(b[j:], '\n')
			line := b[j:]
			if nl >= 0 {
				line = b[j : j+nl]
			}
			if len(line) > 0 && line[0] != ' ' && line[0] != '\t' {
				end = j
				break
			}
			if nl < 0 {
				break
			}
			j += nl + 1
		}
		spans = append(spans, [2]int64{int64(i), int64(end)})
	}
	return spans
}

func looksSops(b []byte) bool {
	return bytes.Contains(b, []byte("ENC[AES256_GCM,")) &&
		(bytes.Contains(b, []byte("\nsops:\n")) || bytes.Contains(b, []byte(`"sops": {`)))
}

// outsideSops keeps the findings that are not wholly inside a sops span of content.
func outsideSops(found []Finding, content []byte) []Finding {
	spans := sopsSpans(content)
	if len(spans) == 0 {
		return found
	}
	var kept []Finding
	for _, f := range found {
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
