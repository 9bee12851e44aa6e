// Package installdoc reads a target's docs/install.md and runs exactly its
// marked blocks, in order, recording what ran.
//
// A shell fence must say what it is in its info string:
//
//	```sh {step=clone-base}                 runs on the machine
//	```sh {step=provision-age-key runs=operator}   the operator does it (the harness's own action)
//	```sh {run=no}                          an example, never run
//	```yaml {run=no}                        data, shown, never run
//
// Any other code block a rendered page shows (an indented one, raw HTML
// <pre>, a fence in another language or none) is an error: the operator
// would read it as commands the harness never judged.
//
// `${NAME}` (upper case) is a placeholder filled from an allow-list; lower-case
// `${name}` and `$name` are the shell's own. Every rule is checked before
// anything runs, and each error names the file and line.
package installdoc

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/text"
)

// Where a block runs.
const (
	Machine  = "machine"
	Operator = "operator"
)

// Block is one runnable block of the document.
type Block struct {
	Step   string
	Runs   string // Machine or Operator
	Line   int    // line of the opening fence
	Raw    string // body as written in the document
	Body   string // body with placeholders filled
	SHA256 string // of Raw: identifies the block as documented
}

// Doc is a parsed install document.
type Doc struct {
	Path     string
	Blocks   []Block
	Examples int // {run=no} blocks
	Manifest string
	// What the reader reads besides the steps: each paragraph, list item
	// and heading (Prose), and each {run=no} block's body (Shown), by the
	// line it starts on — for the rule that the operator is asked for the
	// age key and nothing else (OperatorAsks).
	Prose, Shown []Text
}

// Text is a piece of the document and the line it starts on.
type Text struct {
	Line int
	Text string
}

// ParseError names the document, the line and the rule broken.
type ParseError struct {
	Path string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg) }

var (
	// A fence is shell, in any of its spellings, and then must be tagged;
	// or data (shown, never run) in a language listed here; nothing else.
	// A rendered document shows a ```Bash or ```zsh block to the operator as
	// commands just the same.
	shellLangs = []string{"sh", "bash", "shell", "console", "zsh", "fish", "ksh", "dash", "ash", "csh", "tcsh", "posh",
		"shellscript", "shell-script", "shellsession", "sh-session", "bash-session", "shell-session", "terminal", "bat", "cmd",
		"powershell", "pwsh", "ps1", "nu", "nushell", "xonsh", "elvish"}
	dataLangs   = []string{"json", "yaml", "yml", "toml", "ini", "nix", "xml", "csv", "diff", "patch", "pem", "hcl", "conf", "properties", "sops"}
	stepName    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	placeholder = regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)\}`)
	attrPair    = regexp.MustCompile(`^([a-z]+)=([A-Za-z0-9_.-]+)$`)
)

// Parse reads the document and checks every rule. values are the allowed
// placeholders and what they stand for.
func Parse(path string, src []byte, values map[string]string) (*Doc, error) {
	doc := &Doc{Path: path}
	root := goldmark.New().Parser().Parse(text.NewReader(src))
	lines := lineStarts(src)
	seen := map[string]int{}
	var errs []*ParseError
	fail := func(line int, format string, args ...any) {
		errs = append(errs, &ParseError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	err := ast.Walk(root, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		// A block a rendered page shows as code, however it is written, is
		// read by the operator as commands: it cannot hide from the rules.
		switch b := n.(type) {
		case *ast.CodeBlock: // indented four spaces: no info string, so no tag
			fail(firstLine(b, lines), "an indented code block: a reader may take it for commands — fence it (```sh {step=NAME}, ```sh {run=no}, or a data language with {run=no})")
		case *ast.HTMLBlock:
			if codeTag.Match(blockText(b, src)) {
				fail(firstLine(b, lines), "a raw HTML <pre>/<code> block: a reader may take it for commands — write it as a fenced block, tagged")
			}
		case *ast.RawHTML: // inline, in a paragraph
			for i := 0; i < b.Segments.Len(); i++ {
				if seg := b.Segments.At(i); preTag.Match(seg.Value(src)) {
					fail(lineOf(lines, seg.Start), "raw HTML <pre> in a paragraph: a reader may take it for commands — write it as a fenced block, tagged")
				}
			}
		}
		switch n.(type) {
		case *ast.Paragraph, *ast.TextBlock, *ast.Heading:
			doc.Prose = append(doc.Prose, Text{Line: firstLine(n, lines), Text: string(blockText(n, src))})
		}
		fb, ok := n.(*ast.FencedCodeBlock)
		if !ok {
			return ast.WalkContinue, nil
		}
		info := ""
		if fb.Info != nil {
			info = string(fb.Info.Segment.Value(src))
		}
		line := fenceLine(fb, src, lines)
		var body bytes.Buffer
		for i := 0; i < fb.Lines().Len(); i++ {
			seg := fb.Lines().At(i)
			body.Write(seg.Value(src))
		}
		if !closed(fb, src, lines, line) {
			fail(line, "unterminated code fence (no closing ``` before the end of the document)")
			return ast.WalkContinue, nil
		}
		lang, attrs, perr := parseInfo(info)
		if perr != "" {
			fail(line, "malformed fence tag %q: %s", info, perr)
			return ast.WalkContinue, nil
		}
		switch kindOf(lang) {
		case dataFence:
			switch {
			case len(attrs) > 0 && attrs["run"] != "no":
				fail(line, "a %s block is data, shown and never run: it takes no step (only shell blocks are steps)", lang)
			case attrs["run"] != "no": // a diff or a patch is applied by hand: the writer says it is not a step
				fail(line, "a %s block without {run=no}: say it is shown, never run (a step is a shell block)", lang)
			default:
				doc.Examples++
				doc.Shown = append(doc.Shown, Text{Line: line, Text: body.String()})
			}
			return ast.WalkContinue, nil
		case otherFence:
			what := fmt.Sprintf("language %q", lang)
			if lang == "" {
				what = "no language"
			}
			fail(line, "a fence with %s: a reader may take it for commands — make it shell ({step=NAME} or {run=no}) or name its data language (%s)",
				what, strings.Join(dataLangs, ", "))
			return ast.WalkContinue, nil
		}
		if attrs["run"] == "no" {
			if len(attrs) > 1 {
				fail(line, "a {run=no} block takes no other attributes")
			}
			doc.Examples++
			doc.Shown = append(doc.Shown, Text{Line: line, Text: body.String()})
			return ast.WalkContinue, nil
		}
		step, ok := attrs["step"]
		if !ok {
			fail(line, "shell block without a tag: mark it {step=NAME} to run it or {run=no} if it is an example")
			return ast.WalkContinue, nil
		}
		if !stepName.MatchString(step) {
			fail(line, "step name %q: use lower-case letters, digits and '-'", step)
		}
		if first, dup := seen[step]; dup {
			fail(line, "duplicate step %q (first at line %d)", step, first)
		}
		seen[step] = line
		runs := attrs["runs"]
		if runs == "" {
			runs = Machine
		}
		if runs != Machine && runs != Operator {
			fail(line, "runs=%q: want machine or operator", runs)
		}
		for k := range attrs {
			if k != "step" && k != "runs" {
				fail(line, "unknown attribute %q (known: step, runs, run)", k)
			}
		}
		raw := body.String()
		filled, missing := fill(raw, values)
		for _, m := range missing {
			fail(line, "unknown placeholder ${%s} in step %q (known: %s)", m, step, strings.Join(sortedKeys(values), ", "))
		}
		if strings.TrimSpace(raw) == "" {
			fail(line, "step %q is empty", step)
		}
		sum := sha256.Sum256([]byte(raw))
		doc.Blocks = append(doc.Blocks, Block{Step: step, Runs: runs, Line: line, Raw: raw, Body: filled, SHA256: hex.EncodeToString(sum[:])})
		return ast.WalkContinue, nil
	})
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return nil, &ParseError{Path: path, Line: errs[0].Line, Msg: errs[0].Msg +
			map[bool]string{true: "; also: " + strings.Join(msgs[1:], "; "), false: ""}[len(errs) > 1]}
	}
	if len(doc.Blocks) == 0 {
		return nil, &ParseError{Path: path, Line: 1, Msg: "no runnable {step=…} blocks"}
	}
	doc.Manifest = manifest(doc.Blocks)
	return doc, nil
}

// Step returns the block of that name, or nil.
func (d *Doc) Step(name string) *Block {
	for i := range d.Blocks {
		if d.Blocks[i].Step == name {
			return &d.Blocks[i]
		}
	}
	return nil
}

// manifest hashes the sequence of blocks: names, where they run, bodies.
func manifest(blocks []Block) string {
	h := sha256.New()
	for _, b := range blocks {
		fmt.Fprintf(h, "%s\x00%s\x00%s\n", b.Step, b.Runs, b.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))
}

type fenceKind int

const (
	shellFence fenceKind = iota
	dataFence
	otherFence
)

// kindOf classifies a fence's language, case-insensitively: shell (a listed
// spelling, or anything ending in -session, console or terminal), data (the
// allow-list), or other.
func kindOf(lang string) fenceKind {
	l := strings.ToLower(lang)
	switch {
	case slices.Contains(shellLangs, l), strings.HasSuffix(l, "-session"), strings.HasSuffix(l, "console"), strings.HasSuffix(l, "terminal"):
		return shellFence
	case slices.Contains(dataLangs, l):
		return dataFence
	}
	return otherFence
}

// parseInfo splits "sh {step=x runs=operator}" into the language and attributes.
func parseInfo(info string) (lang string, attrs map[string]string, problem string) {
	info = strings.TrimSpace(info)
	attrs = map[string]string{}
	lang, rest, _ := strings.Cut(info, " ")
	if i := strings.IndexByte(lang, '{'); i >= 0 { // "sh{step=x}"
		lang, rest = lang[:i], info[i:]
	}
	rest = strings.TrimSpace(rest)
	if rest == "" {
		return lang, attrs, ""
	}
	if !strings.HasPrefix(rest, "{") || !strings.HasSuffix(rest, "}") {
		return lang, nil, "attributes must be one {key=value …} group"
	}
	for _, f := range strings.Fields(strings.TrimSuffix(strings.TrimPrefix(rest, "{"), "}")) {
		m := attrPair.FindStringSubmatch(f)
		if m == nil {
			return lang, nil, fmt.Sprintf("%q is not key=value", f)
		}
		if _, dup := attrs[m[1]]; dup {
			return lang, nil, fmt.Sprintf("attribute %q given twice", m[1])
		}
		attrs[m[1]] = m[2]
	}
	if v, ok := attrs["run"]; ok && v != "no" {
		return lang, nil, "run= only takes no"
	}
	return lang, attrs, ""
}

// Filled is the document with its placeholders filled from values anew
// (each block's Body from its Raw): a run parses install.md once, before the
// machine exists, and fills in the machine's address once it is known.
// Parse has checked every placeholder against the allow-list; a name
// values lacks is an error all the same.
func (d *Doc) Filled(values map[string]string) (*Doc, error) {
	out := *d
	out.Blocks = make([]Block, len(d.Blocks))
	for i, b := range d.Blocks {
		filled, missing := fill(b.Raw, values)
		if len(missing) > 0 {
			return nil, &ParseError{Path: d.Path, Line: b.Line, Msg: fmt.Sprintf("no value for ${%s} in step %q", missing[0], b.Step)}
		}
		b.Body = filled
		out.Blocks[i] = b
	}
	return &out, nil
}

func fill(body string, values map[string]string) (string, []string) {
	var missing []string
	out := placeholder.ReplaceAllStringFunc(body, func(m string) string {
		name := placeholder.FindStringSubmatch(m)[1]
		v, ok := values[name]
		if !ok {
			if !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
			return m
		}
		return v
	})
	return out, missing
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func lineStarts(src []byte) []int {
	starts := []int{0}
	for i, c := range src {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// lineOf is the 1-based line of a byte offset.
func lineOf(lines []int, off int) int {
	return sort.Search(len(lines), func(i int) bool { return lines[i] > off })
}

var (
	codeTag = regexp.MustCompile(`(?i)<(pre|code|textarea|xmp|listing|plaintext)\b`)
	preTag  = regexp.MustCompile(`(?i)<(pre|xmp|listing|plaintext)\b`)
)

// firstLine is the line a block's first line of text is on.
func firstLine(n ast.Node, lines []int) int {
	if n.Lines().Len() == 0 {
		return 1
	}
	return lineOf(lines, n.Lines().At(0).Start)
}

// blockText is a block's lines as written.
func blockText(n ast.Node, src []byte) []byte {
	var b bytes.Buffer
	for i := 0; i < n.Lines().Len(); i++ {
		seg := n.Lines().At(i)
		b.Write(seg.Value(src))
	}
	return b.Bytes()
}

// fenceLine is the line of the opening fence: the line before the first body
// line, or of the info string.
func fenceLine(fb *ast.FencedCodeBlock, src []byte, lines []int) int {
	if fb.Info != nil {
		return lineOf(lines, fb.Info.Segment.Start)
	}
	if fb.Lines().Len() > 0 {
		return lineOf(lines, fb.Lines().At(0).Start) - 1
	}
	return 1
}

// closed reports whether a closing fence follows the block's body.
func closed(fb *ast.FencedCodeBlock, src []byte, lines []int, open int) bool {
	next := open // line index (0-based) after the opening fence
	if n := fb.Lines().Len(); n > 0 {
		next = lineOf(lines, fb.Lines().At(n-1).Start) // 1-based line of last body line == 0-based index of the next
	}
	if next >= len(lines) {
		return false
	}
	end := len(src)
	if next+1 < len(lines) {
		end = lines[next+1]
	}
	l := strings.TrimSpace(string(src[lines[next]:end]))
	return strings.HasPrefix(l, "```") || strings.HasPrefix(l, "~~~")
}
