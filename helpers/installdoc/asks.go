package installdoc

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// OperatorAsks reads what the document asks the operator to provide besides
// the steps the harness runs: the operator follows the page, not its tags.
// In a block shown and never run ({run=no}), a command that pushes a file to
// the machine (scp, rsync, sftp, `incus file push`, ssh into a file) other
// than the age key's push is an ask; in the prose, a sentence that tells the
// operator — in the imperative, or "the operator/you … must …" — to copy,
// paste, upload, provide (…) a file or a value is an ask unless the age key
// is all it names. Each ask is a problem naming its line (docs/decisions.md:
// "the age key and nothing else").
func OperatorAsks(doc *Doc, ageKeyPath string) []string {
	var out []string
	for _, s := range doc.Shown {
		for _, cmd := range commands(s.Text) {
			if cmd.text != "" && pushesAFile(cmd.text) && !ageKeyCommand(cmd.text, ageKeyPath) {
				out = append(out, fmt.Sprintf("%s:%d: a block shown to the operator ({run=no}) has them push a file to the machine: %q — the operator provides the age key and nothing else",
					doc.Path, s.Line+cmd.line, cmd.text))
			}
		}
	}
	for _, p := range doc.Prose {
		for _, sentence := range sentences(p.Text) {
			if what := askedFor(sentence.text, ageKeyPath); what != "" {
				out = append(out, fmt.Sprintf("%s:%d: the text asks the operator for %s: %q — the operator provides the age key and nothing else",
					doc.Path, p.Line+sentence.line, what, strings.TrimSpace(sentence.text)))
			}
		}
	}
	return out
}

// pushesAFile: the command copies a file onto another host.
func pushesAFile(text string) bool {
	f := strings.Fields(text)
	if len(f) == 0 {
		return false
	}
	switch path.Base(strings.Trim(f[0], `'"`)) {
	case "scp", "rsync", "sftp":
		return true
	case "incus", "lxc":
		return len(f) > 2 && f[1] == "file" && f[2] == "push"
	case "ssh":
		return strings.Contains(text, ">") || strings.Contains(text, " tee ") || strings.Contains(text, "cat -")
	}
	return false
}

// The verbs of an ask, and who is asked.
var (
	askVerbs = `copy|scp|rsync|paste|upload|transfer|place|put|drop|provide|supply|hand|send|enter|type|fill|insert|add|write|create|store|set`
	// An imperative: the sentence starts with the verb (after a list mark,
	// emphasis, or a word of sequence).
	imperative = regexp.MustCompile(`(?i)^[\s>*_\-+\d.)]*(?:(?:then|next|now|first|finally|also|and|please),?\s+|(?:before|after|once|when|on|to)\b[^,.]{0,60},\s*)*(` + askVerbs + `)\b`)
	// "the operator (must|should|…) copy", "you … paste"
	addressed = regexp.MustCompile(`(?i)\b(?:the\s+operators?|you|operators?)\s+(?:(?:must|should|shall|will|then|also|need\s+to|needs\s+to|has\s+to|have\s+to|is\s+to|are\s+to)\s+)*(` + askVerbs + `)(?:s|es)?\b`)
	// What is asked for: a path or a file name, or a secret by its kind.
	aFile   = regexp.MustCompile("(?:^|[\\s`'\"(])((?:~|\\.{0,2})?/[\\w.@/-]+|[\\w.-]+\\.(?:pem|key|txt|env|json|ya?ml|crt|cer|age|asc|gpg|p12|pfx|conf|cfg|ini|toml|netrc))\\b")
	aSecret = regexp.MustCompile(`(?i)\b(tokens?|passwords?|passphrases?|credentials?|secrets?|certificates?|certs?|private\s+keys?|api\s+keys?|ssh\s+keys?|deploy\s+keys?)\b`)
	// The age key, as a sentence may name it.
	ageKeyWords = regexp.MustCompile(`(?i)\b(?:the\s+)?(?:bootstrap\s+)?age\s+(?:private\s+)?key\b|\bbootstrap\s+key\b|\bage-?key\b`)
)

// askedFor is what the sentence asks the operator for ("" if it asks for
// nothing, or for the age key alone).
func askedFor(sentence, ageKeyPath string) string {
	if !imperative.MatchString(sentence) && !addressed.MatchString(sentence) {
		return ""
	}
	rest := strings.ReplaceAll(sentence, ageKeyPath, " ")
	if base := path.Base(ageKeyPath); base != "." && base != "/" {
		rest = strings.ReplaceAll(rest, base, " ")
	}
	rest = ageKeyWords.ReplaceAllString(rest, " ")
	if m := aFile.FindStringSubmatch(rest); m != nil {
		return "a file (" + m[1] + ")"
	}
	if m := aSecret.FindStringSubmatch(rest); m != nil {
		return "a " + strings.ToLower(m[1])
	}
	return ""
}

type sentence struct {
	text string
	line int // 0-based within the text
}

// sentences splits prose at ". ", "! ", "? ", ":" followed by a newline, and
// blank lines, keeping the line each starts on.
func sentences(text string) []sentence {
	var out []sentence
	start, line, startLine := 0, 0, 0
	flush := func(end int) {
		if s := strings.TrimSpace(text[start:end]); s != "" {
			out = append(out, sentence{text: strings.Join(strings.Fields(s), " "), line: startLine})
		}
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c == '\n' {
			line++
		}
		end := (c == '.' || c == '!' || c == '?') && (i+1 == len(text) || text[i+1] == ' ' || text[i+1] == '\n')
		if end {
			flush(i + 1)
			start, startLine = i+1, line
		}
	}
	flush(len(text))
	return out
}
