package lint

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// benchDockerfile is a 50-line multi-stage Dockerfile shaped like a
// service's: global ARGs, a builder stage with cache and bind mounts,
// COPY --from a stage and an image, continuations and a heredoc.
func benchDockerfile(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# syntax=docker/dockerfile:1.7\n")
	fmt.Fprintf(&b, "ARG REGISTRY=registry.corp.example.com\n")
	fmt.Fprintf(&b, "ARG GO_VERSION=1.%d\n", 20+i%5)
	fmt.Fprintf(&b, "ARG BASE=${REGISTRY}/base/debian:12.%d\n\n", i%7)
	fmt.Fprintf(&b, "FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build\n")
	fmt.Fprintf(&b, "WORKDIR /src/svc-%d\n", i)
	fmt.Fprintf(&b, "ENV CGO_ENABLED=0 \\\n    GOFLAGS=-trimpath\n")
	fmt.Fprintf(&b, "COPY go.mod go.sum ./\n")
	fmt.Fprintf(&b, "RUN --mount=type=cache,target=/go/pkg/mod \\\n    go mod download\n")
	fmt.Fprintf(&b, "COPY . .\n")
	fmt.Fprintf(&b, "RUN --mount=type=cache,target=/root/.cache/go-build \\\n")
	fmt.Fprintf(&b, "    --mount=type=bind,from=localhost:5000/approved/tools:%d,target=/tools \\\n", i%9)
	fmt.Fprintf(&b, "    go build -o /out/svc-%d ./cmd/svc\n\n", i)
	fmt.Fprintf(&b, "FROM build AS test\n")
	fmt.Fprintf(&b, "RUN go vet ./... && \\\n    go test ./...\n\n")
	fmt.Fprintf(&b, "FROM ${BASE} AS runtime\n")
	fmt.Fprintf(&b, "LABEL org.opencontainers.image.title=\"svc-%d\" \\\n      org.opencontainers.image.vendor=\"corp\"\n", i)
	fmt.Fprintf(&b, "RUN apt-get update && \\\n    apt-get install -y --no-install-recommends \\\n      ca-certificates tzdata && \\\n    rm -rf /var/lib/apt/lists/*\n")
	fmt.Fprintf(&b, "COPY --from=build /out/svc-%d /usr/local/bin/svc\n", i)
	fmt.Fprintf(&b, "COPY --from=nginx:1.%d /etc/nginx/mime.types /etc/mime.types\n", 25+i%3)
	fmt.Fprintf(&b, "COPY <<EOF /etc/svc.conf\nlisten = :8080\nname = svc-%d\nEOF\n", i)
	fmt.Fprintf(&b, "USER 65532:65532\n")
	fmt.Fprintf(&b, "EXPOSE 8080\n")
	fmt.Fprintf(&b, "HEALTHCHECK --interval=30s CMD [\"/usr/local/bin/svc\", \"health\"]\n")
	fmt.Fprintf(&b, "ENTRYPOINT [\"/usr/local/bin/svc\"]\n")
	fmt.Fprintf(&b, "CMD [\"serve\"]\n")
	for n := strings.Count(b.String(), "\n"); n < 50; n++ {
		fmt.Fprintf(&b, "# note %d\n", n)
	}
	return b.String()
}

func TestBenchDockerfileShape(t *testing.T) {
	src := benchDockerfile(7)
	if n := strings.Count(src, "\n"); n != 50 {
		t.Fatalf("%d lines, want 50", n)
	}
	fs, err := testLinter(t, nil).Lint(t.Context(), "Dockerfile", Dockerfile, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	// syntax, golang, the tools mount, the base, nginx; not the stages.
	if len(fs) != 5 {
		t.Fatalf("want 5 images, got %v", verdicts(fs))
	}
	for _, f := range fs {
		if !f.Decision.Allowed {
			t.Errorf("denied: %+v", f)
		}
	}
}

func writeBenchTree(b *testing.B, n int) string {
	dir := b.TempDir()
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("svc-%04d", i), "Dockerfile")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(benchDockerfile(i)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// reportFiles reports the median and p99 time for one file.
func reportFiles(b *testing.B, per []time.Duration) {
	slices.Sort(per)
	b.ReportMetric(float64(per[len(per)/2].Microseconds()), "µs/file-p50")
	b.ReportMetric(float64(per[len(per)*99/100].Microseconds()), "µs/file-p99")
}

// BenchmarkLint1000Dockerfiles is `pullguard lint DIR` on a tree of 1,000
// Dockerfiles of 50 lines: walk, read, parse, expand, judge. One op is the
// whole tree; the goal is ≤ 1 s.
func BenchmarkLint1000Dockerfiles(b *testing.B) {
	dir := writeBenchTree(b, 1000)
	l := testLinter(b, nil)
	cpu0 := cpuTime(b)
	for b.Loop() {
		inputs, err := Collect(b.Context(), []string{dir}, "")
		if err != nil || len(inputs) != 1000 {
			b.Fatalf("%d inputs, %v", len(inputs), err)
		}
		fs, errs := l.LintAll(b.Context(), inputs)
		if len(errs) > 0 || len(fs) != 5000 {
			b.Fatalf("%d findings, %v", len(fs), errs)
		}
	}
	// On a shared machine wall time includes waiting for a CPU; the CPU
	// time the process used is the figure another machine reproduces.
	b.ReportMetric((cpuTime(b)-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLintOneDockerfile gives the per-file median and p99, one file
// at a time on one CPU, against the parser-only baseline below.
func BenchmarkLintOneDockerfile(b *testing.B) {
	dir := writeBenchTree(b, 1000)
	inputs, err := Collect(b.Context(), []string{dir}, "")
	if err != nil {
		b.Fatal(err)
	}
	l := testLinter(b, nil)
	var per []time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		fs, err := l.LintInput(b.Context(), inputs[i%len(inputs)])
		per = append(per, time.Since(t0))
		if err != nil || len(fs) != 5 {
			b.Fatalf("%d findings, %v", len(fs), err)
		}
	}
	reportFiles(b, per)
}

// BenchmarkParseOnlyOneDockerfile is the baseline: reading the file and
// BuildKit's parser alone, the floor any BuildKit-based linter pays.
func BenchmarkParseOnlyOneDockerfile(b *testing.B) {
	dir := writeBenchTree(b, 1000)
	inputs, err := Collect(b.Context(), []string{dir}, "")
	if err != nil {
		b.Fatal(err)
	}
	var per []time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		data, err := os.ReadFile(inputs[i%len(inputs)].Path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := parser.Parse(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		per = append(per, time.Since(t0))
	}
	reportFiles(b, per)
}

// BenchmarkExpansionBomb is the 26-line Dockerfile of doubling ARGs: it is
// refused within the expansion bounds (expand.go), a few hundred KiB a run
// where it used to grow without end.
func BenchmarkExpansionBomb(b *testing.B) {
	src := []byte(doublingBomb(strings.Repeat("x", 64), 24))
	l := testLinter(b, nil)
	b.ReportAllocs()
	for b.Loop() {
		fs, err := l.Lint(b.Context(), "Dockerfile", Dockerfile, src)
		if err != nil || len(fs) != 1 || !fs[0].Unresolved {
			b.Fatalf("%+v, %v", fs, err)
		}
	}
}
