package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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

func runBinary(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(builtBinary(t), args...)
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
