package installdoc

import (
	"fmt"
	"strings"
)

// AgeKeyCommandProblems reads what the age key's operator block tells the
// operator to do. The harness performs that step itself (it pushes the key,
// nothing else), so every command there must be the key's push to keyPath —
// scp, rsync or `incus file push` of one file — or a change of its mode or
// owner over ssh (chmod, chown). A block that also copies anything else asks
// for a second out-of-band action the harness would silently not do: each
// such command is a problem naming its line.
func AgeKeyCommandProblems(b Block, keyPath string) []string {
	var out []string
	for _, cmd := range commands(b.Raw) {
		if cmd.text == "" || ageKeyCommand(cmd.text, keyPath) {
			continue
		}
		out = append(out, fmt.Sprintf("operator step %q (line %d): %q is not the age key's push to %s or a mode/owner change of it: the harness does only that",
			b.Step, b.Line+cmd.line, cmd.text, keyPath))
	}
	return out
}

type command struct {
	text string
	line int // 1-based within the block
}

// commands splits a block into commands: lines (a trailing \ continues
// one), and each line at ;, && and ||; comments dropped.
func commands(raw string) []command {
	var out []command
	pending, start := "", 0
	for n, line := range strings.Split(raw, "\n") {
		if pending == "" {
			start = n + 1
		}
		if i := strings.Index(line, " #"); i >= 0 || strings.HasPrefix(strings.TrimSpace(line), "#") {
			if i < 0 {
				i = 0
			}
			line = line[:i]
		}
		if cont, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), "\\"); ok {
			pending += cont + " "
			continue
		}
		full := pending + line
		pending = ""
		for _, part := range splitOps(full) {
			out = append(out, command{strings.TrimSpace(part), start})
		}
	}
	return out
}

func splitOps(s string) []string {
	for _, op := range []string{"&&", "||", ";"} {
		s = strings.ReplaceAll(s, op, "\n")
	}
	return strings.Split(s, "\n")
}

// ageKeyCommand: the command pushes one file to keyPath, or changes the mode
// or owner of keyPath over ssh. Anything with a pipe, a redirection or a
// command substitution is not one of these.
func ageKeyCommand(text, keyPath string) bool {
	for _, shell := range []string{"|", "<", ">", "`", "$("} {
		if strings.Contains(text, shell) {
			return false
		}
	}
	f := strings.Fields(text)
	for i := range f {
		f[i] = strings.Trim(f[i], `'"`)
	}
	args := operands(f[1:], map[string]bool{"-P": true, "-i": true, "-o": true, "-F": true, "-p": true, "-e": true, "--mode": true, "--uid": true, "--gid": true})
	switch f[0] {
	case "scp", "rsync":
		return len(args) == 2 && remotePath(args[1]) == keyPath
	case "incus":
		return len(args) == 4 && args[0] == "file" && args[1] == "push" && strings.HasSuffix(args[3], keyPath)
	case "ssh":
		// ssh [opts] HOST chmod MODE PATH | chown OWNER PATH
		return len(args) == 4 && (args[1] == "chmod" || args[1] == "chown") && args[3] == keyPath
	}
	return false
}

// operands drops flags (and the values of those that take one).
func operands(f []string, takesValue map[string]bool) []string {
	var out []string
	for i := 0; i < len(f); i++ {
		switch {
		case takesValue[f[i]]:
			i++
		case strings.HasPrefix(f[i], "-"):
		default:
			out = append(out, f[i])
		}
	}
	return out
}

// remotePath is the path of an scp/rsync destination host:path ("" if none).
func remotePath(dest string) string {
	_, p, ok := strings.Cut(dest, ":")
	if !ok {
		return ""
	}
	return p
}
