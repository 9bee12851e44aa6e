// Command bench compares the leak scanner with ripgrep and grep on the same
// generated store-like tree (≥ 1 GiB: many small files and some large ones)
// and the same needles (every variant, written as fixed strings for the
// peers), each run several times. It prints throughput, the ratio to rg, peak
// memory, and how many of the planted secrets each tool found.
//
//	go run ./helpers/leakscan/bench [-dir /var/cache/cc-ci-lab/bench-tree] [-runs 5]
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/cc-ci/acceptance/helpers/leakscan"
)

func main() {
	dir := flag.String("dir", "/var/cache/cc-ci-lab/bench-tree", "where the generated tree lives (reused when present)")
	size := flag.Int64("size", 1<<30+64<<20, "bytes of tree to generate")
	runs := flag.Int("runs", 5, "timed runs per tool (after one warm-up)")
	readOnly := flag.String("read", "", "only read every file under this directory, as the scanner walks it, and exit (the floor the bench measures)")
	flag.Parse()
	if *readOnly != "" {
		if err := readTree(*readOnly); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		return
	}
	if err := run(*dir, *size, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// secrets are made from a fixed seed so the tree and needles agree across runs.
func secrets() map[string]string {
	rng := rand.New(rand.NewPCG(42, 42))
	tok := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return hex.EncodeToString(b)
	}
	// GenerateKey ignores its random source: derive the key from a fixed scalar.
	scalar := sha256.Sum256([]byte("cc-ci leakscan bench key"))
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar[:])
	if err != nil {
		panic(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	return map[string]string{
		"tls_key":                   string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE " + "KEY", Bytes: der})),
		"drone_oauth_client_id":     tok(16),
		"drone_oauth_client_secret": tok(32),
		"drone_rpc_secret":          tok(32),
		"webhook_hmac":              tok(32),
		"registry_password":         tok(24),
		"repo_token":                tok(24),
		"bootstrap_age_key":         "AGE-SECRET" + "-KEY-1" + strings.ToUpper(tok(29))[:58],
	}
}

// plants are the leaks hidden in the tree: one per interesting variant.
func plants(s map[string]string) map[string][]byte {
	der := func() []byte { b, _ := pem.Decode([]byte(s["tls_key"])); return b.Bytes }()
	return map[string][]byte{
		"raw token":         []byte("DRONE_RPC_SECRET=" + s["drone_rpc_secret"] + "\n"),
		"hex":               []byte(hex.EncodeToString([]byte(s["webhook_hmac"]))),
		"base64@1":          []byte(base64.StdEncoding.EncodeToString([]byte("x" + s["registry_password"] + "tail-bytes"))),
		"base64url@2":       []byte(base64.URLEncoding.EncodeToString([]byte("xy" + s["repo_token"] + "tail-bytes"))),
		"DER in a binary":   append(append([]byte{0, 1, 2, 3}, der...), 0, 0),
		"PEM line":          []byte(strings.Split(s["tls_key"], "\n")[2] + "\n"),
		"age key":           []byte(s["bootstrap_age_key"] + "\n"),
		"percent-encoded":   []byte("u=" + s["drone_oauth_client_secret"] + "&"),
		"wrapped base64 76": wrap(base64.StdEncoding.EncodeToString([]byte("header:"+s["drone_oauth_client_id"]+":trailer-bytes")), 20),
	}
}

func wrap(s string, width int) []byte {
	var b strings.Builder
	for i := 0; i < len(s); i += width {
		b.WriteString(s[i:min(i+width, len(s))] + "\n")
	}
	return []byte(b.String())
}

// generate writes a store-like tree: ~70% of the bytes in many small files
// (text and binary, like store paths), the rest in a few large ones; the
// planted leaks go into random files.
func generate(dir string, size int64, pl map[string][]byte) error {
	// The tree is reused only if it was made with these very plants.
	h := sha256.New()
	fmt.Fprint(h, size)
	for _, k := range sortedKeys(pl) {
		h.Write([]byte(k))
		h.Write(pl[k])
	}
	recipe := hex.EncodeToString(h.Sum(nil))
	if b, err := os.ReadFile(filepath.Join(dir, ".complete")); err == nil && string(b) == recipe {
		return nil
	}
	_ = os.RemoveAll(dir)
	rng := rand.New(rand.NewPCG(7, 7))
	words := strings.Fields("nix store derivation output path lib bin share doc man systemd unit service config json yaml " +
		"the of and to in is for on with as by at from that this be are")
	var written int64
	names := sortedKeys(pl)
	plantAt := map[int]string{}
	for i, n := range names {
		plantAt[97+i*331] = n
	}
	buf := make([]byte, 0, 64<<20)
	for i := 0; written < size; i++ {
		large := i%1000 == 999
		n := int64(1<<10 + rng.IntN(15<<10))
		if large {
			n = 48 << 20
		}
		buf = buf[:0]
		text := rng.IntN(3) != 0
		for int64(len(buf)) < n {
			if text {
				buf = append(buf, words[rng.IntN(len(words))]...)
				buf = append(buf, " \n"[rng.IntN(8)/7])
			} else {
				for j := 0; j < 64; j++ {
					buf = append(buf, byte(rng.UintN(256)))
				}
			}
		}
		if name, ok := plantAt[i]; ok {
			p := rng.IntN(len(buf) - 1)
			buf = append(buf[:p], append(append([]byte(" "), pl[name]...), buf[p:]...)...)
		}
		sub := filepath.Join(dir, fmt.Sprintf("%02x", i%256), fmt.Sprintf("%032x-pkg-%d", rng.Uint64(), i))
		if err := os.MkdirAll(filepath.Dir(sub), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(sub, buf, 0o644); err != nil {
			return err
		}
		written += int64(len(buf))
	}
	return os.WriteFile(filepath.Join(dir, ".complete"), []byte(recipe), 0o644)
}

func sortedKeys(m map[string][]byte) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

type result struct {
	tool     string
	times    []time.Duration
	rssKB    int64
	found    []string // planted leaks found
	bytes    int64
	skipNote string
}

// plantFiles maps each planted leak's file to its name (the generator puts
// leak k of the sorted names into file 97+331k).
func plantFiles(dir string, pl map[string][]byte) map[string]string {
	names := sortedKeys(pl)
	out := map[string]string{}
	for i, n := range names {
		idx := 97 + i*331
		if m, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("%02x", idx%256), fmt.Sprintf("*-pkg-%d", idx))); len(m) == 1 {
			out[m[0]] = n
		}
	}
	return out
}

func (r result) median() time.Duration {
	t := append([]time.Duration(nil), r.times...)
	sort.Slice(t, func(a, b int) bool { return t[a] < t[b] })
	return t[len(t)/2]
}

func run(dir string, size int64, runs int) error {
	sec := secrets()
	pl := plants(sec)
	fmt.Printf("tree: %s (generating if needed)\n", dir)
	start := time.Now()
	if err := generate(dir, size, pl); err != nil {
		return err
	}
	fmt.Printf("tree ready in %s\n", time.Since(start).Round(time.Second))
	treeBytes, files := du(dir)
	needles := leakscan.Needles(sec, 0, nil)
	// The peers take line-based fixed strings: binary needles (DER) cannot be written as lines.
	var patterns bytes.Buffer
	lineNeedles := 0
	for _, n := range needles {
		if bytes.ContainsAny(n.Bytes, "\n\r\x00") {
			continue
		}
		patterns.Write(n.Bytes)
		patterns.WriteByte('\n')
		lineNeedles++
	}
	tmp, err := os.MkdirTemp("", "ccci-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	patFile := filepath.Join(tmp, "patterns")
	if err := os.WriteFile(patFile, patterns.Bytes(), 0o600); err != nil {
		return err
	}
	needleJSON, _ := json.Marshal(needles)
	bin, err := leakscan.BuildBinary(context.Background(), tmp)
	if err != nil {
		return err
	}
	fmt.Printf("tree: %d files, %.2f GiB; %d needles (%d as lines for rg/grep); %d planted leaks; %d runs each after a warm-up\n\n",
		files, float64(treeBytes)/(1<<30), len(needles), lineNeedles, len(pl), runs)

	// Peak memory comes from GNU time: wait4's figure would include this
	// process's own pages at fork time.
	rssFile := filepath.Join(tmp, "rss")
	timed := func(args ...string) *exec.Cmd {
		return exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", rssFile}, args...)...)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tools := []struct {
		name string
		cmd  func() *exec.Cmd
		in   []byte
	}{
		{readName, func() *exec.Cmd { return timed(self, "-read", dir) }, nil},
		{"ccci-leakscan", func() *exec.Cmd { return timed(bin, dir) }, needleJSON},
		{"rg -F -f (ripgrep)", func() *exec.Cmd { return timed("rg", "-uuu", "-a", "-F", "-l", "-f", patFile, dir) }, nil},
		{"grep -rF -f", func() *exec.Cmd { return timed("grep", "-r", "-a", "-F", "-l", "-f", patFile, dir) }, nil},
	}
	where := plantFiles(dir, pl)
	var results []result
	for _, tl := range tools {
		r := result{tool: tl.name, bytes: treeBytes}
		if _, err := exec.LookPath(tl.cmd().Args[5]); err != nil {
			r.skipNote = "not installed (apt-get install ripgrep time)"
			results = append(results, r)
			continue
		}
		for i := 0; i <= runs; i++ {
			cmd := tl.cmd()
			if tl.in != nil {
				cmd.Stdin = bytes.NewReader(tl.in)
			}
			var out bytes.Buffer
			cmd.Stdout = &out
			t0 := time.Now()
			err := cmd.Run()
			d := time.Since(t0)
			if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
				return fmt.Errorf("%s: %v", tl.name, err)
			}
			if b, err := os.ReadFile(rssFile); err == nil {
				var kb int64
				fmt.Sscan(strings.TrimSpace(string(b)), &kb)
				r.rssKB = max(r.rssKB, kb)
			}
			if i == 0 {
				r.found = foundPlants(tl.name, out.Bytes(), where)
				continue // warm-up: page cache
			}
			r.times = append(r.times, d)
		}
		results = append(results, r)
	}
	var rg, read, scan time.Duration
	for _, r := range results {
		switch {
		case len(r.times) == 0:
		case strings.HasPrefix(r.tool, "rg"):
			rg = r.median()
		case r.tool == readName:
			read = r.median()
		case r.tool == "ccci-leakscan":
			scan = r.median()
		}
	}
	fmt.Printf("%-22s %8s %8s %8s %10s %9s %9s %s\n", "tool", "min s", "median s", "max s", "MiB/s", "vs rg", "peak RSS", "planted leaks found")
	for _, r := range results {
		if len(r.times) == 0 {
			fmt.Printf("%-22s %s\n", r.tool, r.skipNote)
			continue
		}
		t := append([]time.Duration(nil), r.times...)
		sort.Slice(t, func(a, b int) bool { return t[a] < t[b] })
		ratio := "-"
		if rg > 0 {
			ratio = fmt.Sprintf("%.2fx", rg.Seconds()/r.median().Seconds())
		}
		found := fmt.Sprintf("%d/%d", len(r.found), len(pl))
		if r.tool == readName {
			found = "-"
		}
		fmt.Printf("%-22s %8.2f %8.2f %8.2f %10.0f %9s %7dMB %s\n", r.tool, t[0].Seconds(), r.median().Seconds(),
			t[len(t)-1].Seconds(), float64(r.bytes)/(1<<20)/r.median().Seconds(), ratio, r.rssKB/1024, found)
	}
	if read > 0 && scan > 0 {
		fmt.Printf("\nccci-leakscan takes %.2fx the time to merely read the tree (medians; goal: at most 1.20x)\n", scan.Seconds()/read.Seconds())
	}
	fmt.Println()
	for _, r := range results {
		if len(r.times) > 0 && r.tool != readName {
			fmt.Printf("%-22s missed: %s\n", r.tool, missed(pl, r.found))
		}
	}
	return nil
}

func foundPlants(tool string, out []byte, where map[string]string) []string {
	var files []string
	if strings.HasPrefix(tool, "ccci") {
		var rep leakscan.Report
		_ = json.Unmarshal(out, &rep)
		for _, f := range rep.Findings {
			files = append(files, f.Where)
		}
	} else {
		files = strings.Fields(string(out))
	}
	seen := map[string]bool{}
	var names []string
	for _, f := range files {
		if n := where[f]; n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	return names
}

func missed(pl map[string][]byte, found []string) string {
	var out []string
	for name := range pl {
		hit := false
		for _, f := range found {
			hit = hit || f == name
		}
		if !hit {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func du(dir string) (int64, int) {
	var total int64
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
				n++
			}
		}
		return nil
	})
	return total, n
}

// readName is the floor: every file read once, nothing searched.
const readName = "read only (the floor)"

// readTree reads every regular file under dir as the scanner's Dir does
// (a walk feeding GOMAXPROCS readers, a 1 MiB buffer each, no symlink
// followed) and searches nothing: the time a scan cannot beat.
func readTree(dir string) error {
	paths := make(chan string, 256)
	errs := make(chan error, runtime.GOMAXPROCS(0))
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		go func() {
			buf := make([]byte, 1<<20)
			var first error
			for p := range paths {
				f, err := os.Open(p)
				if err == nil {
					for err == nil {
						_, err = f.Read(buf)
					}
					f.Close()
				}
				if err != nil && err != io.EOF && first == nil {
					first = fmt.Errorf("%s: %w", p, err)
				}
			}
			errs <- first
		}()
	}
	walkErr := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			paths <- p
		}
		return err
	})
	close(paths)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		if err := <-errs; err != nil && walkErr == nil {
			walkErr = err
		}
	}
	return walkErr
}
