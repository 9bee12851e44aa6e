package target

import (
	"html"
	"regexp"
	"strings"
	"unicode"
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

// ContainsPhrase reports whether text says phrase as a reader of the
// rendered document would read it: whatever the case and however Markdown
// reflowed it (every run of whitespace — line breaks, tabs, several spaces,
// a no-break space — counts as one space, emphasis marks are ignored), and
// through what does not render: HTML comments and tags, character
// references (&nbsp;, &#8203;) and invisible format characters (zero-width
// space and joiners, soft hyphen, byte-order mark).
func ContainsPhrase(text, phrase string) bool {
	p := normalise(phrase)
	return p != "" && strings.Contains(normalise(text), p)
}

var (
	htmlComment = regexp.MustCompile(`(?s)<!--.*?(-->|$)`)
	htmlTag     = regexp.MustCompile(`</?[A-Za-z][^<>]*>`)
)

func normalise(s string) string {
	s = htmlComment.ReplaceAllString(s, "")
	s = html.UnescapeString(htmlTag.ReplaceAllString(s, ""))
	s = strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Cf, r) { // zero-width space/joiners, soft hyphen, BOM: invisible
			return -1
		}
		return r
	}, s)
	s = strings.NewReplacer("*", "", "_", " ", "`", "").Replace(strings.ToLower(s))
	return strings.Join(strings.Fields(s), " ")
}
