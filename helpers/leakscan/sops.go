package leakscan

// What inside a sops file is exempt from the scan: only its ENC[…] values
// and the fields of its sops metadata that sops writes; every other byte is
// scanned.

import (
	"bytes"
	"regexp"

	"github.com/cc-ci/acceptance/helpers/sopsmeta"
)

// encValue is one sops-encrypted value.
var encValue = regexp.MustCompile(`ENC\[AES256_GCM,[^\]\s]*\]`)

// sopsSpans are the byte ranges of a sops file (recognised by its content,
// never its name) that are ciphertext or sops's own metadata: its ENC[…]
// values and, in its top-level `sops:` block, the lines of the fields sops
// writes (sopsmeta.Fields, at any depth, under parents that are fields too)
// with their multi-line values. Everything else — keys, comments, values
// sops left unencrypted, text pasted beside them, a key under `sops:` that
// sops did not write (sops ignores it and it travels in plaintext) — is
// scanned.
func sopsSpans(b []byte) [][2]int64 {
	if !looksSops(b) {
		return nil
	}
	var spans [][2]int64
	for _, m := range encValue.FindAllIndex(b, -1) {
		spans = append(spans, [2]int64{int64(m[0]), int64(m[1])})
	}
	i := bytes.Index(b, []byte("\nsops:\n"))
	if i < 0 {
		return spans
	}
	spans = append(spans, [2]int64{int64(i), int64(i + len("\nsops:\n"))})
	// YAML: the block runs while lines are indented (or empty). Each key
	// line is exempt when its key is a field and every parent's is too; a
	// line that is no key (a block scalar's, like an age stanza) follows
	// the key above it.
	type level struct {
		indent int
		exempt bool
	}
	stack := []level{{-1, true}}
	for j := i + len("\nsops:\n"); j < len(b); {
		end := len(b)
		if nl := bytes.IndexByte(b[j:], '\n'); nl >= 0 {
			end = j + nl
		}
		line := b[j:end]
		if len(line) > 0 && line[0] != ' ' && line[0] != '\t' {
			break
		}
		body := bytes.TrimLeft(line, " \t")
		indent := len(line) - len(body)
		if rest, ok := bytes.CutPrefix(body, []byte("- ")); ok {
			body, indent = rest, indent+2
		}
		exempt := false
		if m := yamlKey.FindSubmatch(body); m != nil {
			for len(stack) > 1 && stack[len(stack)-1].indent >= indent {
				stack = stack[:len(stack)-1]
			}
			exempt = stack[len(stack)-1].exempt && sopsmeta.IsField(string(m[1]))
			stack = append(stack, level{indent, exempt})
		} else {
			exempt = len(body) == 0 || stack[len(stack)-1].exempt && indent > stack[len(stack)-1].indent
		}
		if exempt {
			spans = append(spans, [2]int64{int64(j), int64(min(end+1, len(b)))})
		}
		j = end + 1
	}
	return spans
}

// yamlKey is a `key:` at the start of a YAML line's content.
var yamlKey = regexp.MustCompile(`^([A-Za-z0-9_.-]+):(\s|$)`)

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
