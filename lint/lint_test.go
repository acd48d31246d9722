package lint

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullguard/pullguard/policy"
)

var update = flag.Bool("update", false, "rewrite golden files")

var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func testLinter(t testing.TB, buildArgs map[string]string) *Linter {
	t.Helper()
	p, err := policy.Load("testdata/policy.yaml", policy.LoadOptions{InsecurePermissions: true})
	if err != nil {
		t.Fatal(err)
	}
	return &Linter{Policy: p, Now: testNow, BuildArgs: buildArgs}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden (go test ./lint -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// lintPaths collects and lints as the CLI does (in parallel, findings in
// input order), failing on any error.
func lintPaths(t *testing.T, l *Linter, paths ...string) []Finding {
	t.Helper()
	inputs, err := Collect(t.Context(), paths, "")
	if err != nil {
		t.Fatal(err)
	}
	all, errs := l.LintAll(t.Context(), inputs)
	for _, err := range errs {
		var skipped *Skipped
		if !errors.As(err, &skipped) {
			t.Fatal(err)
		}
	}
	return all
}

// TestCorpus lints the whole corpus directory — Dockerfiles, Compose and
// Kubernetes files, and files the walk must skip — into JSON Lines.
func TestCorpus(t *testing.T) {
	fs := lintPaths(t, testLinter(t, nil), "testdata/corpus")
	var out bytes.Buffer
	if err := WriteJSON(&out, fs); err != nil {
		t.Fatal(err)
	}
	golden(t, "corpus", out.Bytes())
	for _, skipped := range []string{"vendor/", "values.yaml", "helm/", "dockerignore"} {
		if strings.Contains(out.String(), skipped) {
			t.Errorf("a finding comes from %s, which the walk must skip", skipped)
		}
	}
}

// TestBuildArgsOverride: --build-arg values replace ARG defaults before
// the first FROM, and give declared ARGs without a default their value.
func TestBuildArgsOverride(t *testing.T) {
	l := testLinter(t, map[string]string{
		"REGISTRY": "localhost:5000/approved", "TAG": "3.20", "MIRROR": "localhost:5000/approved",
		"TARGETARCH": "arm64v8", "LATE": "ignored: not a global ARG",
	})
	fs := lintPaths(t, l, "testdata/corpus/args/Dockerfile")
	var out bytes.Buffer
	if err := WriteJSON(&out, fs); err != nil {
		t.Fatal(err)
	}
	golden(t, "args-overridden", out.Bytes())
}

// verdicts renders findings as "line source input -> ALLOW|DENY reference".
func verdicts(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		v := "DENY"
		if f.Decision.Allowed {
			v = "ALLOW"
		}
		out = append(out, strings.Join([]string{f.Source, f.Input, v, f.Decision.Reference}, " | "))
	}
	return out
}

func lintString(t *testing.T, l *Linter, kind Kind, src string) []string {
	t.Helper()
	fs, err := l.Lint(t.Context(), "test", kind, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return verdicts(fs)
}

func TestDockerfileCases(t *testing.T) {
	l := testLinter(t, nil)
	cases := []struct {
		name, src string
		want      []string
	}{
		{"datadog compliant", "FROM python:3.6\n",
			[]string{"FROM | python:3.6 | ALLOW | docker.io/library/python:3.6"}},
		{"datadog non-compliant", "FROM randomrepo/python:3.6\nFROM registry.something.io/images/base/ubuntu_2204:release\n",
			[]string{"FROM | randomrepo/python:3.6 | DENY | docker.io/randomrepo/python:3.6",
				"FROM | registry.something.io/images/base/ubuntu_2204:release | DENY | registry.something.io/images/base/ubuntu_2204:release"}},
		{"registry with a port is not Docker Hub", "FROM localhost:5000/evil/x:1\n",
			[]string{"FROM | localhost:5000/evil/x:1 | DENY | localhost:5000/evil/x:1"}},
		{"stage names and scratch are not images", "FROM golang:1.22 AS Build\nFROM scratch\nCOPY --from=build /a /a\nCOPY --from=0 /a /b\nRUN --mount=from=BUILD,target=/x true\n",
			[]string{"FROM | golang:1.22 | ALLOW | docker.io/library/golang:1.22"}},
		{"a later stage is an image for FROM, as in BuildKit", "FROM later\nFROM alpine:3.20 AS later\n",
			[]string{"FROM | later | DENY | docker.io/library/later:latest", "FROM | alpine:3.20 | ALLOW | docker.io/library/alpine:3.20"}},
		{"FROM matches an earlier stage's name as written", "FROM alpine:3.20 AS build\nFROM Build\n",
			[]string{"FROM | alpine:3.20 | ALLOW | docker.io/library/alpine:3.20", "FROM | Build | DENY | "}},
		{"ARG default expanded", "ARG R=registry.corp.example.com\nFROM $R/app:1\n",
			[]string{"FROM | $R/app:1 | ALLOW | registry.corp.example.com/app:1"}},
		{"ARG without value fails closed", "ARG R\nFROM ${R:-registry.corp.example.com}/app:1\n",
			[]string{"FROM | ${R:-registry.corp.example.com}/app:1 | DENY | "}},
		{"ARG inside a stage does not reach FROM", "FROM alpine:3.20\nARG R=evil.io\nFROM ${R}alpine:3.20\n",
			[]string{"FROM | alpine:3.20 | ALLOW | docker.io/library/alpine:3.20", "FROM | ${R}alpine:3.20 | ALLOW | docker.io/library/alpine:3.20"}},
		{"lower-case and continuation", "from \\\n  alpine:3.20 \\\n  as base\ncopy --from=busybox:1.36 \\\n  /bin/sh /sh\n",
			[]string{"FROM | alpine:3.20 | ALLOW | docker.io/library/alpine:3.20", "COPY --from | busybox:1.36 | ALLOW | docker.io/library/busybox:1.36"}},
		{"heredoc body is not an instruction", "FROM alpine:3.20\nRUN <<EOF\nFROM evil.io/x:1\nEOF\n",
			[]string{"FROM | alpine:3.20 | ALLOW | docker.io/library/alpine:3.20"}},
		{"syntax directive is an image", "# syntax=evil.io/frontend:1\nFROM alpine:3.20\n",
			[]string{"# syntax | evil.io/frontend:1 | DENY | evil.io/frontend:1", "FROM | alpine:3.20 | ALLOW | docker.io/library/alpine:3.20"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := lintString(t, l, Dockerfile, tc.src)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestUnresolvedReasons(t *testing.T) {
	l := testLinter(t, nil)
	fs, err := l.Lint(t.Context(), "Dockerfile", Dockerfile, []byte("ARG TAG\nFROM alpine:$TAG\nFROM alpine:3.20\nCOPY --from=$TAG /a /b\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 3 {
		t.Fatalf("want 3 findings, got %v", verdicts(fs))
	}
	if f := fs[0]; f.Decision.Allowed || !f.Unresolved || f.Line != 2 ||
		f.Decision.Reason != "unresolved: ARG TAG has no value (pass --build-arg TAG=...)" {
		t.Errorf("FROM alpine:$TAG: %+v", f)
	}
	if f := fs[2]; f.Decision.Allowed || !f.Unresolved || f.Line != 4 ||
		!strings.Contains(f.Decision.Reason, "variable expansion is not supported for --from") {
		t.Errorf("COPY --from=$TAG: %+v", f)
	}
	l.BuildArgs = map[string]string{"TAG": "3.20"}
	fs, _ = l.Lint(t.Context(), "Dockerfile", Dockerfile, []byte("ARG TAG\nFROM alpine:$TAG\n"))
	if len(fs) != 1 || !fs[0].Decision.Allowed || fs[0].Decision.Reference != "docker.io/library/alpine:3.20" {
		t.Errorf("with --build-arg TAG=3.20: %v", verdicts(fs))
	}
}

func TestParseErrorsHavePositions(t *testing.T) {
	l := testLinter(t, nil)
	cases := []struct {
		kind     Kind
		src      string
		wantLine int
	}{
		{Dockerfile, "FROM alpine:3.20\nRUN true\nFROM a b\n", 3},
		{Dockerfile, "FROM alpine:3.20\nRUN --mount=from=$X,target=/x true\n", 2},
		{Compose, "services:\n  web:\n    image: nginx\n    ports: a: b\n", 4},
		{Kubernetes, "apiVersion: v1\nkind: Pod\n---\nspec: {containers: [{image: [1]}]}\napiVersion: v1\nkind: Pod\n", 4},
		{Kubernetes, "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - name: a\n      image: {x: 1}\n", 6},
	}
	for _, tc := range cases {
		_, err := l.Lint(t.Context(), "f", tc.kind, []byte(tc.src))
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%s %q: want a ParseError, got %v", tc.kind, tc.src, err)
			continue
		}
		if pe.Line != tc.wantLine || !strings.HasPrefix(pe.Error(), "f:") {
			t.Errorf("%s %q: error %q at line %d, want line %d", tc.kind, tc.src, pe, pe.Line, tc.wantLine)
		}
	}
}

func TestKindOf(t *testing.T) {
	for name, want := range map[string]Kind{
		"Dockerfile": Dockerfile, "a/Containerfile": Dockerfile, "web.Dockerfile": Dockerfile, "Dockerfile.prod": Dockerfile,
		"Dockerfile.dockerignore": "", "compose.yaml": Compose, "compose.override.yml": Compose,
		"docker-compose.yml": Compose, "docker-compose.prod.yaml": Compose, "deploy.yaml": Kubernetes,
		"k8s/pod.yml": Kubernetes, "README.md": "", "dockerfile": "", "Containerfile.x": "",
	} {
		if got := KindOf(name); got != want {
			t.Errorf("KindOf(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestAliasBomb: nested aliases that would expand to billions of nodes are
// refused at once with a position instead of keeping CI busy.
func TestAliasBomb(t *testing.T) {
	src := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for _, name := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		src += name + ": &" + name + " [" + strings.Repeat("*"+prev+", ", 9) + "*" + prev + "]\n"
		prev = name
	}
	src += "apiVersion: v1\nkind: List\nitems: [*i, *i]\n"
	for _, kind := range []Kind{Kubernetes, Compose} {
		start := time.Now()
		_, err := testLinter(t, nil).Lint(t.Context(), "bomb.yaml", kind, []byte(src))
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "aliases") {
			t.Errorf("%s: want a ParseError about aliases, got %v", kind, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v", kind, d)
		}
	}
}

// TestSyntaxBuildArg: --build-arg BUILDKIT_SYNTAX replaces the # syntax=
// directive as the frontend image, as BuildKit's builder does.
func TestSyntaxBuildArg(t *testing.T) {
	l := testLinter(t, map[string]string{"BUILDKIT_SYNTAX": "evil.io/frontend:1 --some-option"})
	got := lintString(t, l, Dockerfile, "# syntax=docker/dockerfile:1\nFROM alpine:3.20\n")
	want := []string{"--build-arg BUILDKIT_SYNTAX | evil.io/frontend:1 --some-option | DENY | evil.io/frontend:1",
		"FROM | alpine:3.20 | ALLOW | docker.io/library/alpine:3.20"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestWalkSkipsUnparsableYAML: a Helm template found by the walk is not an
// error but is reported as skipped, with the parser's line.
func TestWalkSkipsUnparsableYAML(t *testing.T) {
	inputs, err := Collect(t.Context(), []string{"testdata/corpus/helm"}, "")
	if err != nil || len(inputs) != 1 || !inputs[0].Probe {
		t.Fatalf("%+v, %v", inputs, err)
	}
	fs, err := testLinter(t, nil).LintInput(t.Context(), inputs[0])
	var skipped *Skipped
	if fs != nil || !errors.As(err, &skipped) || !strings.HasPrefix(err.Error(), "testdata/corpus/helm/templates/deployment.yaml:") {
		t.Fatalf("findings %v, error %v", fs, err)
	}
	// Named on the command line, the same file is a parse error.
	inputs, _ = Collect(t.Context(), []string{"testdata/corpus/helm/templates/deployment.yaml"}, "")
	_, err = testLinter(t, nil).LintInput(t.Context(), inputs[0])
	var pe *ParseError
	if !errors.As(err, &pe) || errors.As(err, &skipped) {
		t.Fatalf("named file: %v", err)
	}
}

// TestComposeInlineDockerfile: a Dockerfile held in the Compose file is
// linted with build.args; an arg Compose takes from the environment is
// unresolved until --build-arg gives it, and its lines are the Compose
// file's.
func TestComposeInlineDockerfile(t *testing.T) {
	src := "services:\n  app:\n    build:\n      args: [BASE]\n      dockerfile_inline: |\n        ARG BASE=alpine\n        FROM ${BASE}:3.20\n"
	got := lintString(t, testLinter(t, nil), Compose, src)
	if want := "compose service app dockerfile_inline FROM | ${BASE}:3.20 | DENY | "; len(got) != 1 || got[0] != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	fs, err := testLinter(t, map[string]string{"BASE": "registry.corp.example.com/base"}).Lint(t.Context(), "c.yml", Compose, []byte(src))
	if err != nil || len(fs) != 1 || !fs[0].Decision.Allowed || fs[0].Line != 7 {
		t.Fatalf("with --build-arg BASE: %+v, %v", fs, err)
	}
	_, err = testLinter(t, nil).Lint(t.Context(), "c.yml", Compose, []byte("services:\n  app:\n    build:\n      dockerfile_inline: |\n        FROM a\n        FROM a b\n"))
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 6 || !strings.Contains(err.Error(), "compose service app dockerfile_inline") {
		t.Fatalf("parse error: %v", err)
	}
}
