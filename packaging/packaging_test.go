// Package packaging_test checks the files the packages ship against the
// code they describe: the journald catalog against the daemon's MESSAGE_IDs
// and journal fields, the default policy against the real loader, the
// environment file and pullguard(8) (docs/pullguard.8.md, the Markdown the
// package's man page is rendered from) against the flags of `pullguard daemon`,
// and the nfpm configuration against the units and the files in the tree.
// What only installing can show (lintian, dpkg, rpm, systemd-analyze) is
// checked by verify.sh.
package packaging_test

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pullguard/pullguard/daemon"
	"github.com/pullguard/pullguard/policy"
)

// The pullguard binary under test, built from this tree on first use (not
// in TestMain: listing the tests, as make test-fuzz does, must stay cheap).
var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// pullguardBin builds ../cmd/pullguard once and returns its path.
func pullguardBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "pullguard-packaging-test")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "pullguard")
		// go test puts its own go first on PATH.
		build := exec.Command("go", "build", "-o", binPath, "../cmd/pullguard")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building pullguard: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// catalogEntry is one entry of a journald catalog file.
type catalogEntry struct {
	headers map[string]string
	body    string
	line    int
}

// parseCatalog reads the catalog format of journalctl --update-catalog:
// "-- ID" starts an entry, "Key: value" headers up to the first blank line,
// then the body; lines starting with # are comments.
func parseCatalog(t *testing.T, path string) map[string]*catalogEntry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	entries := map[string]*catalogEntry{}
	var cur *catalogEntry
	inHeaders := false
	var body []string
	flush := func() {
		if cur != nil {
			cur.body = strings.TrimSpace(strings.Join(body, "\n"))
		}
		body = nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "-- "):
			flush()
			id := strings.TrimSpace(strings.TrimPrefix(line, "-- "))
			if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
				t.Errorf("%s:%d: %q is not a MESSAGE_ID (32 lowercase hex digits)", path, n, id)
			}
			if prev, dup := entries[id]; dup {
				t.Errorf("%s:%d: %s already has an entry at line %d", path, n, id, prev.line)
			}
			cur = &catalogEntry{headers: map[string]string{}, line: n}
			entries[id] = cur
			inHeaders = true
		case cur == nil:
			if strings.TrimSpace(line) != "" {
				t.Errorf("%s:%d: text before the first entry", path, n)
			}
		case inHeaders && line == "":
			inHeaders = false
		case inHeaders:
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				t.Errorf("%s:%d: %q: want a \"Key: value\" header or a blank line", path, n, line)
				continue
			}
			cur.headers[k] = v
		default:
			body = append(body, line)
		}
	}
	flush()
	return entries
}

// daemonFields is every journal field name daemon/fields.go declares:
// the values of its Field* constants.
func daemonFields(t *testing.T) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../daemon/fields.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]bool{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Field") || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, _ := strconv.Unquote(lit.Value)
					fields[v] = true
				}
			}
		}
	}
	if len(fields) < 10 {
		t.Fatalf("found only %d Field* constants in daemon/fields.go; has it moved?", len(fields))
	}
	return fields
}

func TestCatalogExplainsEveryMessageID(t *testing.T) {
	entries := parseCatalog(t, "pullguard.catalog")
	known := map[string]bool{}
	for _, m := range daemon.MessageIDs() {
		known[m.ID] = true
		t.Run(m.Name, func(t *testing.T) {
			e, ok := entries[m.ID]
			if !ok {
				t.Fatalf("pullguard.catalog has no entry for MessageID%s (%s): journalctl -x would explain nothing", m.Name, m.ID)
			}
			for _, h := range []string{"Subject", "Defined-By", "Support"} {
				if e.headers[h] == "" {
					t.Errorf("entry %s (line %d) has no %s header", m.ID, e.line, h)
				}
			}
			// What happened and what to do: more than a restated subject.
			if len(e.body) < 120 {
				t.Errorf("entry %s (line %d): body of %d bytes says too little: %q", m.ID, e.line, len(e.body), e.body)
			}
		})
	}
	for id, e := range entries {
		if !known[id] {
			t.Errorf("pullguard.catalog line %d: %s is not a MESSAGE_ID the daemon writes (daemon.MessageIDs)", e.line, id)
		}
	}
}

// TestCatalogNamesRealFields: journalctl -x replaces @FIELD@ with the
// entry's field, and prints FIELD bare when the entry has none, so a
// misspelt name shows up in front of an SRE as a raw word.
func TestCatalogNamesRealFields(t *testing.T) {
	fields := daemonFields(t)
	for id, e := range parseCatalog(t, "pullguard.catalog") {
		for _, m := range regexp.MustCompile(`@([A-Z0-9_]+)@`).FindAllStringSubmatch(e.body, -1) {
			if !fields[m[1]] {
				t.Errorf("entry %s (line %d) substitutes @%s@, which daemon/fields.go does not define", id, e.line, m[1])
			}
		}
		for _, w := range regexp.MustCompile(`\bPULLGUARD_[A-Z0-9_]+`).FindAllString(e.body, -1) {
			if !fields[w] {
				t.Errorf("entry %s (line %d) mentions %s, which daemon/fields.go does not define", id, e.line, w)
			}
		}
	}
}

// manPage8 is pullguard(8)'s source: build.sh renders the packaged man
// page from it with go-md2man.
const manPage8 = "../docs/pullguard.8.md"

// TestManPageListsEveryMessageID: pullguard(8) lists the MESSAGE_IDs that
// SREs filter on.
func TestManPageListsEveryMessageID(t *testing.T) {
	page := readFile(t, manPage8)
	for _, m := range daemon.MessageIDs() {
		if !strings.Contains(page, m.ID) {
			t.Errorf("%s does not list MessageID%s (%s)", manPage8, m.Name, m.ID)
		}
	}
	known := daemonFields(t)
	known["PULLGUARD_FLAG"] = true // the pattern itself
	for _, f := range daemonFlags(t) {
		known[envName(f.name)] = true
	}
	for _, w := range regexp.MustCompile(`\bPULLGUARD_[A-Z0-9_]+`).FindAllString(page, -1) {
		if !known[w] {
			t.Errorf("%s mentions %s, which is neither a journal field nor a flag's variable", manPage8, w)
		}
	}
}

func TestShippedPolicyIsAudit(t *testing.T) {
	p, err := policy.LoadFiles([]string{"policy.yaml"}, policy.LoadOptions{InsecurePermissions: true})
	if err != nil {
		t.Fatalf("the shipped policy does not load: %v", err)
	}
	// Installing the package must never remove an image: audit mode, and
	// no rule an operator did not write.
	if p.Mode != policy.ModeAudit {
		t.Errorf("shipped policy mode = %s, want audit", p.Mode)
	}
	if p.Default != policy.DefaultDeny || p.Running != policy.RunningKeep {
		t.Errorf("shipped policy default=%s running=%s, want the documented deny and keep", p.Default, p.Running)
	}
	if allow, deny := p.Counts(); allow != 0 || deny != 0 {
		t.Errorf("shipped policy has %d allow and %d deny rules, want none (examples stay commented)", allow, deny)
	}
	// mode, default and running may be set in one file only: the shipped
	// file leaves them to the operator, here or in one drop-in.
	dropIn := filepath.Join(t.TempDir(), "10-enforce.yaml")
	writeFile(t, dropIn, "mode: enforce\nrunning: stop\nallow:\n  - image: registry.example.com/**\n")
	p, err = policy.LoadFiles([]string{"policy.yaml", dropIn}, policy.LoadOptions{InsecurePermissions: true})
	if err != nil {
		t.Fatalf("a drop-in setting mode is refused next to the shipped policy: %v", err)
	}
	if p.Mode != policy.ModeEnforce {
		t.Errorf("with a drop-in saying enforce, mode = %s", p.Mode)
	}
	if _, err := os.Stat(policy.DefaultPath); err == nil {
		t.Logf("note: %s exists on this machine; this test reads packaging/policy.yaml only", policy.DefaultPath)
	}
}

// uncommentExamples turns the commented settings of the shipped policy into
// YAML: a line "#key:" starts a commented setting, and the lines that follow
// it starting with "#  " continue it. Prose comments ("# text") stay.
func uncommentExamples(src string) string {
	var out []string
	inBlock := false
	setting := regexp.MustCompile(`^#[a-z_]+:`)
	for _, line := range strings.Split(src, "\n") {
		switch {
		case setting.MatchString(line):
			out = append(out, line[1:])
			inBlock = true
		case inBlock && strings.HasPrefix(line, "#  "):
			out = append(out, line[1:])
		default:
			inBlock = false
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestShippedPolicyExamples: an operator who uncomments the examples gets a
// valid policy that does what the comments say.
func TestShippedPolicyExamples(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, uncommentExamples(readFile(t, "policy.yaml")))
	p, err := policy.LoadFiles([]string{path}, policy.LoadOptions{InsecurePermissions: true})
	if err != nil {
		t.Fatalf("the shipped policy's examples, uncommented, do not load: %v", err)
	}
	if allow, deny := p.Counts(); allow != 4 || deny != 1 || p.Mode != policy.ModeEnforce {
		t.Fatalf("uncommented examples: mode %s, %d allow and %d deny rules; want enforce, 4 and 1", p.Mode, allow, deny)
	}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		ref     string
		at      time.Time
		allowed bool
	}{
		{"registry.example.com/team/app:2.0", now, true},
		{"registry.example.com.evil.io/team/app:2.0", now, false},
		{"nginx:1.25", now, true},
		{"nginx:stable", now, true},
		{"nginx", now, false},                           // :latest, denied everywhere
		{"registry.example.com/app:latest", now, false}, // deny wins
		{"nginx:2.0", now, false},
		{"ghcr.io/acme/tool@sha256:50d858e0985ecc7f60418aaf0cc5ab587f42c2570a884095a9e8ccacd0f6545c", now, true},
		{"ghcr.io/acme/tool:1.0", now, false},
		{"ghcr.io/acme/legacy:1", now, true},
		{"ghcr.io/acme/legacy:1", time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC), false},
	} {
		t.Run(tc.ref+"@"+tc.at.Format("2006-01-02"), func(t *testing.T) {
			d := p.Decide(tc.ref, tc.at)
			if d.Allowed != tc.allowed {
				t.Errorf("Decide(%q) allowed=%v (%s), want %v", tc.ref, d.Allowed, d.Reason, tc.allowed)
			}
		})
	}
}

// daemonFlag is one flag of `pullguard daemon`, from its --help.
type daemonFlag struct {
	name, def string
}

// daemonFlags parses `pullguard daemon --help`, as a user would read it, in
// an environment without DOCKER_HOST or PULLGUARD_ variables.
func daemonFlags(t *testing.T) map[string]daemonFlag {
	t.Helper()
	cmd := exec.Command(pullguardBin(t), "daemon", "--help")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pullguard daemon --help: %v", err)
	}
	flagLine := regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)`)
	defRe := regexp.MustCompile(`\(default "?(.*?)"?\)$`)
	flags := map[string]daemonFlag{}
	for _, line := range strings.Split(string(out), "\n") {
		m := flagLine.FindStringSubmatch(line)
		if m == nil || m[1] == "help" {
			continue
		}
		f := daemonFlag{name: m[1]}
		if d := defRe.FindStringSubmatch(strings.TrimSpace(line)); d != nil {
			f.def = d[1]
		}
		flags[f.name] = f
	}
	if len(flags) < 5 {
		t.Fatalf("found only %d flags in pullguard daemon --help:\n%s", len(flags), out)
	}
	return flags
}

// notInEnvFile are daemon flags the environment file deliberately does not
// offer, with the reason.
var notInEnvFile = map[string]string{
	"insecure-policy-permissions": "development only; a host must never run a policy others can write",
}

func envName(flag string) string {
	return "PULLGUARD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// TestEnvFileMatchesDaemonFlags: /etc/default/pullguard and
// /etc/sysconfig/pullguard offer every flag of the daemon, name none that
// does not exist (it would be ignored without a word), and show the real
// default where they show one.
func TestEnvFileMatchesDaemonFlags(t *testing.T) {
	flags := daemonFlags(t)
	byEnv := map[string]daemonFlag{}
	for _, f := range flags {
		byEnv[envName(f.name)] = f
	}
	assignment := regexp.MustCompile(`^#?([A-Z][A-Z0-9_]*)=(.*)$`)
	seen := map[string]bool{}
	for n, line := range strings.Split(readFile(t, "pullguard.env"), "\n") {
		n++
		if line == "" || strings.HasPrefix(line, "# ") || line == "#" {
			continue
		}
		m := assignment.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("pullguard.env:%d: %q is neither a comment (\"# ...\") nor a NAME=value line", n, line)
			continue
		}
		if !strings.HasPrefix(line, "#") {
			t.Errorf("pullguard.env:%d: %s is set; the shipped file sets nothing, so that the defaults in the binary apply", n, m[1])
		}
		name, value := m[1], m[2]
		f, ok := byEnv[name]
		if !ok {
			t.Errorf("pullguard.env:%d: %s is not the variable of any `pullguard daemon` flag", n, name)
			continue
		}
		seen[name] = true
		if f.def != "" && f.def != "[]" && value != f.def {
			t.Errorf("pullguard.env:%d: %s=%s, but the default of --%s is %q", n, name, value, f.name, f.def)
		}
		if strings.ContainsAny(value, "\"'\\ ") {
			t.Errorf("pullguard.env:%d: %q needs quoting rules that systemd and shells read differently; keep values plain", n, value)
		}
	}
	for _, f := range flags {
		if _, skip := notInEnvFile[f.name]; skip {
			continue
		}
		if !seen[envName(f.name)] {
			t.Errorf("pullguard.env does not offer %s (--%s)", envName(f.name), f.name)
		}
	}
}

// TestManPageDocumentsDaemonFlags: pullguard(8) describes every flag of
// the daemon and every command.
func TestManPageDocumentsDaemonFlags(t *testing.T) {
	page := readFile(t, manPage8)
	for _, f := range daemonFlags(t) {
		// A flag is documented where it is a definition's term:
		// "`--flag`" at the start of a line.
		if !regexp.MustCompile("(?m)^`--" + regexp.QuoteMeta(f.name) + "`").MatchString(page) {
			t.Errorf("%s does not document --%s", manPage8, f.name)
		}
	}
	out, err := exec.Command(pullguardBin(t), "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	inCommands := false
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "Available Commands:"):
			inCommands = true
		case inCommands && strings.TrimSpace(line) == "":
			inCommands = false
		case inCommands:
			name := strings.Fields(line)[0]
			if name == "help" {
				continue
			}
			// A command's entry is a definition's term under COMMANDS:
			// "`name`" or "`name subcommand`" at the start of a line.
			if !regexp.MustCompile("(?m)^`" + regexp.QuoteMeta(name) + "[` ]").MatchString(page) {
				t.Errorf("%s has no entry for the command %q", manPage8, name)
			}
		}
	}
}

// nfpmConfig is the part of nfpm.yaml the tests look at.
type nfpmConfig struct {
	Contents []struct {
		Src      string `yaml:"src"`
		Dst      string `yaml:"dst"`
		Type     string `yaml:"type"`
		Packager string `yaml:"packager"`
		FileInfo struct {
			Mode int `yaml:"mode"`
		} `yaml:"file_info"`
	} `yaml:"contents"`
	Overrides map[string]struct {
		Scripts map[string]string `yaml:"scripts"`
	} `yaml:"overrides"`
}

// TestNFPMConfig: the package installs what the units and the daemon
// expect where they expect it, and every file it takes from the tree exists.
func TestNFPMConfig(t *testing.T) {
	var cfg nfpmConfig
	if err := yaml.Unmarshal([]byte(readFile(t, "nfpm.yaml")), &cfg); err != nil {
		t.Fatal(err)
	}
	type want struct{ src, typ, packager string }
	wants := map[string]want{
		"/usr/bin/pullguard":                             {"${STAGE}/pullguard", "", ""},
		policy.DefaultPath:                               {"packaging/policy.yaml", "config|noreplace", ""},
		"/etc/pullguard/policy.d":                        {"", "dir", ""},
		"/etc/default/pullguard":                         {"packaging/pullguard.env", "config|noreplace", "deb"},
		"/etc/sysconfig/pullguard":                       {"packaging/pullguard.env", "config|noreplace", "rpm"},
		"/usr/lib/systemd/system/pullguard.service":      {"systemd/pullguard.service", "", ""},
		"/usr/lib/systemd/system/pullguard-authz.socket": {"systemd/pullguard-authz.socket", "", ""},
		"/usr/lib/systemd/catalog/pullguard.catalog":     {"packaging/pullguard.catalog", "", ""},
		policy.DefaultTrustedRoot:                        {"packaging/trusted_root.json", "", ""},
	}
	for _, c := range cfg.Contents {
		if w, ok := wants[c.Dst]; ok {
			if c.Src != w.src || c.Type != w.typ || c.Packager != w.packager {
				t.Errorf("%s: src %q type %q packager %q; want %q %q %q", c.Dst, c.Src, c.Type, c.Packager, w.src, w.typ, w.packager)
			}
			delete(wants, c.Dst)
		}
		if c.Src != "" && !strings.Contains(c.Src, "${") {
			if _, err := os.Stat(filepath.Join("..", c.Src)); err != nil {
				t.Errorf("%s: source %s: %v", c.Dst, c.Src, err)
			}
		}
		if c.FileInfo.Mode == 0 {
			t.Errorf("%s: no file_info mode: it would take the builder's umask", c.Dst)
		}
	}
	for dst := range wants {
		t.Errorf("nfpm.yaml does not install %s", dst)
	}
	for pkg, o := range cfg.Overrides {
		for kind, script := range o.Scripts {
			st, err := os.Stat(filepath.Join("..", script))
			if err != nil {
				t.Errorf("%s %s script: %v", pkg, kind, err)
			} else if st.Mode()&0o111 == 0 {
				t.Errorf("%s %s script %s is not executable", pkg, kind, script)
			}
		}
	}

	// The unit reads the environment files the packages install.
	unit := readFile(t, "../systemd/pullguard.service")
	for _, f := range []string{"/etc/default/pullguard", "/etc/sysconfig/pullguard"} {
		if !strings.Contains(unit, "EnvironmentFile=-"+f+"\n") {
			t.Errorf("pullguard.service does not read %s (EnvironmentFile=-%s)", f, f)
		}
	}
	socket := readFile(t, "../systemd/pullguard-authz.socket")
	if !strings.Contains(unit, "Sockets=pullguard-authz.socket\n") || !strings.Contains(socket, "Service=pullguard.service\n") {
		t.Error("pullguard.service and pullguard-authz.socket do not name each other (Sockets=, Service=)")
	}
}

// TestManPagesHaveMarkdownSources: every man page the packages install is
// rendered from docs/PAGE.md (man.sh), whose go-md2man title block names
// the same page and section, so that man(1), apropos and the file agree.
func TestManPagesHaveMarkdownSources(t *testing.T) {
	var cfg nfpmConfig
	if err := yaml.Unmarshal([]byte(readFile(t, "nfpm.yaml")), &cfg); err != nil {
		t.Fatal(err)
	}
	manDst := regexp.MustCompile(`^/usr/share/man/man(\d)/([a-z-]+)\.(\d)\.gz$`)
	pages := 0
	for _, c := range cfg.Contents {
		m := manDst.FindStringSubmatch(c.Dst)
		if m == nil {
			continue
		}
		pages++
		name, section := m[2], m[3]
		if m[1] != section {
			t.Errorf("%s: a section %s page installed in man%s", c.Dst, section, m[1])
		}
		if want := "${STAGE}/" + name + "." + section + ".gz"; c.Src != want {
			t.Errorf("%s: src %q, want %q (what build.sh renders)", c.Dst, c.Src, want)
		}
		src := "../docs/" + name + "." + section + ".md"
		first, _, _ := strings.Cut(readFile(t, src), "\n")
		want := "% " + strings.ToUpper(name) + " " + section + ` "@DATE@" "pullguard @VERSION@" `
		if !strings.HasPrefix(first, want) {
			t.Errorf("%s: first line %q, want the title block %q...", src, first, want)
		}
		if !strings.Contains(readFile(t, "man.sh"), name+"."+section) {
			t.Errorf("man.sh does not render %s.%s", name, section)
		}
	}
	if pages != 2 {
		t.Errorf("nfpm.yaml installs %d man pages, want pullguard(8) and pullguard-policy(5)", pages)
	}
}

func TestMaintainerScriptsAreShell(t *testing.T) {
	scripts, _ := filepath.Glob("deb/*")
	rpmScripts, _ := filepath.Glob("rpm/*")
	scripts = append(scripts, rpmScripts...)
	scripts = slices.DeleteFunc(scripts, func(s string) bool { return strings.HasSuffix(s, "lintian-overrides") })
	if len(scripts) < 6 {
		t.Fatalf("found %d maintainer scripts, want the 3 deb and 3 rpm ones", len(scripts))
	}
	for _, s := range scripts {
		t.Run(s, func(t *testing.T) {
			if !strings.HasPrefix(readFile(t, s), "#!/bin/sh\n") {
				t.Errorf("%s does not start with #!/bin/sh", s)
			}
			if out, err := exec.Command("sh", "-n", s).CombinedOutput(); err != nil {
				t.Errorf("sh -n %s: %v\n%s", s, err, out)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
