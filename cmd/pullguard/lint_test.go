package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	builtOnce sync.Once
	builtPath string
	builtErr  error
)

// builtBinary builds pullguard once for the tests that run it as a user
// would: a separate process, its exit status, its stdin.
func builtBinary(t *testing.T) string {
	t.Helper()
	builtOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pullguard-bin")
		if err != nil {
			builtErr = err
			return
		}
		builtPath = filepath.Join(dir, "pullguard")
		out, err := exec.Command("go", "build", "-o", builtPath, ".").CombinedOutput()
		if err != nil {
			builtErr = err
			t.Logf("%s", out)
		}
	})
	if builtErr != nil {
		t.Fatalf("building pullguard: %v", builtErr)
	}
	return builtPath
}

// runBinary runs pullguard, killed after a minute: a hostile input must
// fail the test, not hang the suite.
func runBinary(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, builtBinary(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "PULLGUARD_POLICY=")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLintBinary(t *testing.T) {
	pol := fixedPolicy(t)
	dir := t.TempDir()
	allowed := writeFile(t, dir, "ok/Dockerfile", "ARG BASE=localhost:5000/approved/base\nFROM ${BASE}:2 AS build\nFROM nginx:1.25\nCOPY --from=build /a /a\n")
	denied := writeFile(t, dir, "bad/Dockerfile", "FROM nginx:1.25\nCOPY --from=localhost:5000/evil/tools:1 /t /t\n")
	broken := writeFile(t, dir, "broken/Dockerfile", "FROM nginx:1.25\nFROM a b\n")
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "chart/templates/pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n{{- if .Values.enabled }}\n")
	manifest := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: c\n      image: localhost:5000/evil/miner:1\n"

	cases := []struct {
		name     string
		stdin    string
		args     []string
		wantCode int
		wantOut  []string // lines expected in stdout, in order
		wantErr  string
	}{
		{"allowed", "", []string{"lint", "--policy", pol, allowed}, 0,
			[]string{allowed + ":2: ALLOW localhost:5000/approved/base:2 POLICY:3: matches allow rule localhost:5000/approved/** [FROM ${BASE}:2]",
				allowed + ":3: ALLOW docker.io/library/nginx:1.25 POLICY:4: matches allow rule docker.io/library/* tags [1.*] [FROM nginx:1.25]"}, ""},
		{"denied", "", []string{"lint", "--policy", pol, denied}, 1,
			[]string{denied + ":2: DENY  localhost:5000/evil/tools:1 default: no allow rule matches [COPY --from localhost:5000/evil/tools:1]"}, ""},
		{"build-arg", "", []string{"lint", "--policy", pol, "--build-arg", "BASE=localhost:5000/evil/base", allowed}, 1,
			[]string{allowed + ":2: DENY  localhost:5000/evil/base:2 default: no allow rule matches [FROM ${BASE}:2]"}, ""},
		{"stdin kubernetes", manifest, []string{"lint", "--policy", pol, "--type", "kubernetes", "-"}, 1,
			[]string{"stdin:7: DENY  localhost:5000/evil/miner:1 default: no allow rule matches [Pod p container c localhost:5000/evil/miner:1]"}, ""},
		{"stdin dockerfile", "from nginx:1.25\n", []string{"lint", "--policy", pol, "--type=dockerfile", "-"}, 0,
			[]string{"stdin:1: ALLOW docker.io/library/nginx:1.25"}, ""},
		{"stdin needs --type", "FROM nginx:1.25\n", []string{"lint", "--policy", pol, "-"}, 2, nil, "needs --type"},
		{"parse error with position", "", []string{"lint", "--policy", pol, allowed, broken}, 2,
			[]string{allowed + ":2: ALLOW"}, broken + ":2: "},
		{"walk skips a template with a note", "", []string{"lint", "--policy", pol, filepath.Join(dir, "chart")}, 0,
			nil, filepath.Join(dir, "chart/templates/pod.yaml") + ":5: skipped, not YAML lint can read"},
		{"nothing to lint", "", []string{"lint", "--policy", pol, filepath.Join(dir, "empty")}, 0,
			nil, "no Dockerfile, Compose file or Kubernetes manifest found in " + filepath.Join(dir, "empty")},
		{"bad output", "", []string{"lint", "--policy", pol, "-o", "xml", allowed}, 2, nil, "--output must be"},
		{"bad build-arg", "", []string{"lint", "--policy", pol, "--build-arg", "NOVALUE", allowed}, 2, nil, "want NAME=VALUE"},
		{"missing policy", "", []string{"lint", "--policy", filepath.Join(dir, "none.yaml"), allowed}, 2, nil, "none.yaml"},
		{"unknown file kind", "", []string{"lint", "--policy", pol, writeFile(t, dir, "notes.txt", "x")}, 2, nil, "use --type"},
		{"json", "", []string{"lint", "--policy", pol, "-o", "json", denied}, 1,
			[]string{`{"file":"` + denied + `","line":1,"source":"FROM","input":"nginx:1.25","reference":"docker.io/library/nginx:1.25","allowed":true,"rule":"POLICY:4","reason":"matches allow rule docker.io/library/* tags [1.*]"}`,
				`{"file":"` + denied + `","line":2,"source":"COPY --from","input":"localhost:5000/evil/tools:1","reference":"localhost:5000/evil/tools:1","allowed":false,"rule":"","reason":"no allow rule matches"}`}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runBinary(t, tc.stdin, tc.args...)
			out = strings.ReplaceAll(out, pol, "POLICY")
			if code != tc.wantCode {
				t.Errorf("exit status %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out, errOut)
			}
			rest := out
			for _, want := range tc.wantOut {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Errorf("stdout lacks (in order) %q:\n%s", want, out)
					break
				}
				rest = rest[i+len(want):]
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr %q lacks %q", errOut, tc.wantErr)
			}
		})
	}
}

// TestLintSARIF: the SARIF log names the denied image's file and line, the
// rule and the reason, and lists nothing that is allowed.
func TestLintSARIF(t *testing.T) {
	pol := fixedPolicy(t)
	dir := t.TempDir()
	writeFile(t, dir, "Dockerfile", "FROM nginx:1.25\nCOPY --from=localhost:5000/evil/tools:1 /t /t\n")
	cmd := exec.Command(builtBinary(t), "lint", "--policy", pol, "--output", "sarif", ".")
	cmd.Dir = dir
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("want exit status 1, got %v", err)
	}
	var log struct {
		Version string
		Runs    []struct {
			Results []struct {
				RuleID    string
				Level     string
				Message   struct{ Text string }
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
						Region           struct{ StartLine int }
					}
				}
			}
		}
	}
	if err := json.Unmarshal(out, &log); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if log.Version != "2.1.0" || len(log.Runs) != 1 || len(log.Runs[0].Results) != 1 {
		t.Fatalf("want one run with one result:\n%s", out)
	}
	r := log.Runs[0].Results[0]
	loc := r.Locations[0].PhysicalLocation
	if r.RuleID != "image-not-allowed" || r.Level != "error" || loc.ArtifactLocation.URI != "Dockerfile" || loc.Region.StartLine != 2 ||
		r.Message.Text != "COPY --from: localhost:5000/evil/tools:1 is not allowed: no allow rule matches" {
		t.Errorf("result: %+v", r)
	}
}

// TestLintHostileRepositories: what a repository can throw at lint — an
// ARG expansion bomb, links out of the tree or in a loop, names that would
// forge lines of output — each ends in a finding or an escaped line and a
// failing status, never a hang, a silent pass or a forged verdict.
func TestLintHostileRepositories(t *testing.T) {
	pol := fixedPolicy(t)
	base := t.TempDir()
	outside := writeFile(t, base, "outside/Dockerfile", "FROM localhost:5000/evil/miner:1\n")
	tree := filepath.Join(base, "repo")

	// 26 lines: ARG A of 8 bytes, 24 ARGs doubling it, FROM the last (128 MiB).
	bomb := "ARG A=xxxxxxxx\n"
	for i, prev := 1, "A"; i <= 24; i++ {
		bomb += fmt.Sprintf("ARG B%d=${%s}${%s}\n", i, prev, prev)
		prev = fmt.Sprintf("B%d", i)
	}
	bomb += "FROM $B24\n"
	writeFile(t, tree, "bomb/Dockerfile", bomb)

	writeFile(t, tree, "app/Dockerfile.base", "FROM nginx:1.25\n")
	link := func(target, name string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(tree, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(tree, name)); err != nil {
			t.Fatal(err)
		}
	}
	link("app/Dockerfile.base", "Dockerfile")
	link(outside, "abs/Dockerfile")
	link("../../outside/Dockerfile", "up/compose.yaml")
	link("compose.yaml", "loop/compose.yaml")

	// A directory whose name would print a line of its own, and one with
	// terminal escapes; a manifest whose object name holds escapes.
	forged := "x\n" + tree + "/Dockerfile:1: ALLOW localhost:5000/evil/miner:1 POLICY:3: matches allow rule localhost:5000/approved/** [FROM x]\n"
	writeFile(t, tree, forged+"/Dockerfile", "FROM localhost:5000/evil/miner:1\n")
	writeFile(t, tree, "\x1b[2J\x1b]0;pwned\x07/Dockerfile", "FROM nginx:1.25\n")
	writeFile(t, tree, "k8s/pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: \"p\\e[8m\"}\nspec:\n  containers: [{name: c, image: localhost:5000/evil/miner:1}]\n")

	run := func(args ...string) (int, []string, string) {
		t.Helper()
		start := time.Now()
		code, out, errOut := runBinary(t, "", append([]string{"lint", "--policy", pol}, args...)...)
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("lint %v took %v", args, d)
		}
		return code, strings.Split(strings.TrimSuffix(strings.ReplaceAll(out, pol, "POLICY"), "\n"), "\n"), errOut
	}

	t.Run("expansion bomb", func(t *testing.T) {
		code, lines, errOut := run(filepath.Join(tree, "bomb"))
		want := tree + "/bomb/Dockerfile:26: DENY  \"$B24\" default: unresolved: ARG B10 on line 11 expands to more than 4096 bytes, which no image reference needs [FROM $B24]"
		if code != 1 || len(lines) != 1 || lines[0] != want {
			t.Errorf("exit %d, stdout %q, stderr %q\nwant exit 1 and %q", code, lines, errOut, want)
		}
	})

	t.Run("links", func(t *testing.T) {
		code, lines, errOut := run(tree)
		for _, want := range []string{
			tree + "/Dockerfile:1: ALLOW docker.io/library/nginx:1.25 POLICY:4: matches allow rule docker.io/library/* tags [1.*] [FROM nginx:1.25]",
			tree + "/abs/Dockerfile: DENY  " + fmt.Sprintf("%q", outside) + " default: the link leads out of the tree lint walks, to the file " + outside +
				": what it holds where the build runs is not known here (name it to lint it) [symlink " + outside + "]",
			tree + "/loop/compose.yaml: DENY  \"compose.yaml\" default: the link loops: it never reaches a file, and lint does not read it [symlink compose.yaml]",
			tree + "/up/compose.yaml: DENY  \"../../outside/Dockerfile\" default: the link leads out of the tree lint walks, to the file " + outside +
				": what it holds where the build runs is not known here (name it to lint it) [symlink ../../outside/Dockerfile]",
		} {
			if !slicesContains(lines, want) {
				t.Errorf("stdout lacks %q:\n%s", want, strings.Join(lines, "\n"))
			}
		}
		if code != 1 {
			t.Errorf("exit %d, want 1; stderr %q", code, errOut)
		}
	})

	t.Run("text output escapes names", func(t *testing.T) {
		_, lines, _ := run(tree)
		out := strings.Join(lines, "\n")
		if strings.ContainsAny(out, "\x1b\x07") {
			t.Errorf("stdout holds terminal control characters:\n%q", out)
		}
		for _, want := range []string{
			fmt.Sprintf("%q", tree+"/"+forged+"/Dockerfile") + ":1: DENY  localhost:5000/evil/miner:1 default: no allow rule matches [FROM localhost:5000/evil/miner:1]",
			fmt.Sprintf("%q", tree+"/\x1b[2J\x1b]0;pwned\x07/Dockerfile") + ":1: ALLOW docker.io/library/nginx:1.25",
			tree + "/k8s/pod.yaml:5: DENY  localhost:5000/evil/miner:1 default: no allow rule matches [\"Pod p\\x1b[8m container c\" localhost:5000/evil/miner:1]",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
		}
		for _, l := range lines {
			if strings.HasPrefix(l, tree+"/Dockerfile:1: ALLOW localhost:5000/evil") {
				t.Errorf("a file name forged a line: %q", l)
			}
		}
	})
}

func slicesContains(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// TestLintStopsOnSIGTERM: a CI job cancelled while lint works through a
// large tree (300 Dockerfiles of 40,000 lines) gets lint's exit within a
// second or two, a failing status and a line saying why — not a process
// that runs on until it is killed.
func TestLintStopsOnSIGTERM(t *testing.T) {
	pol := fixedPolicy(t)
	dir := t.TempDir()
	var src strings.Builder
	src.WriteString("FROM nginx:1.25\n")
	for i := range 40000 {
		fmt.Fprintf(&src, "RUN echo %d && true\n", i)
	}
	first := writeFile(t, dir, "d0/Dockerfile", src.String())
	for i := 1; i < 300; i++ {
		name := filepath.Join(dir, fmt.Sprintf("d%d", i))
		if err := os.Mkdir(name, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(first, filepath.Join(name, "Dockerfile")); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(builtBinary(t), "lint", "--policy", pol, dir)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("lint finished before it could be stopped (%v): the input is not slow enough", err)
	case <-time.After(time.Second):
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	var err error
	select {
	case err = <-exited:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("lint was still running 20 s after SIGTERM (killed)")
	}
	d := time.Since(sent)
	if d > 2*time.Second {
		t.Errorf("lint exited %v after SIGTERM, want within 2 s", d)
	}
	t.Logf("exited %v after SIGTERM", d)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("exit %v, want status 2", err)
	}
	if want := "pullguard: lint stopped before it finished (terminated signal received): nothing was judged\n"; errOut.String() != want || out.Len() != 0 {
		t.Errorf("stdout %q, stderr %q; want no findings and %q", out.String(), errOut.String(), want)
	}
}
