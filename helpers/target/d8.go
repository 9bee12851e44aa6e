package target

import (
	"strings"
)

// D8Parts splits the committed D8 document into its static part (a level-2
// heading that starts with "Static") and its live part (one that starts
// with "Live"), each from its heading line to the next level-2 heading. A
// "### Live …" sub-heading is not a live part.
func D8Parts(doc string) (static, live string) {
	var cur *string
	for _, line := range strings.Split(doc, "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			cur = nil
			switch h = strings.ToLower(strings.TrimSpace(h)); {
			case strings.HasPrefix(h, "static"):
				cur = &static
			case strings.HasPrefix(h, "live"):
				cur = &live
			}
		}
		if cur != nil {
			*cur += line + "\n"
		}
	}
	return static, live
}

// ContainsPhrase reports whether text says phrase, whatever the case and
// however Markdown reflowed it: every run of whitespace (line breaks, tabs,
// several spaces) counts as one space, and emphasis marks are ignored.
func ContainsPhrase(text, phrase string) bool {
	p := normalise(phrase)
	return p != "" && strings.Contains(normalise(text), p)
}

func normalise(s string) string {
	s = strings.NewReplacer("*", "", "_", " ", "`", "").Replace(strings.ToLower(s))
	return strings.Join(strings.Fields(s), " ")
}
