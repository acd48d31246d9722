package lint_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pullguard/pullguard/lint"
	"github.com/pullguard/pullguard/policy"
)

// TestHadolintDL3026 runs hadolint's own spec cases for DL3026 ("Use only
// an allowed registry in the FROM image", test/Hadolint/Rule/DL3026Spec.hs)
// through lint, as a team moving from hadolint writes its trusted
// registries: registry R is the allow rule R/**, and hadolint's "*" (every
// registry) is **. A trusted docker.io is all of Docker Hub, official
// images and everyone's; no trusted registry at all is default: allow.
func TestHadolintDL3026(t *testing.T) {
	for _, tc := range []struct {
		name       string
		registries []string
		dockerfile []string
		denied     int
	}{
		{"does not warn on empty allowed registries", nil,
			[]string{"FROM random.com/debian"}, 0},
		{"warn on non-allowed registry", []string{"docker.io"},
			[]string{"FROM random.com/debian"}, 1},
		{"does not warn on allowed registries", []string{"x.com", "random.com"},
			[]string{"FROM random.com/debian"}, 0},
		{"doesn't warn on scratch image", []string{"x.com", "random.com"},
			[]string{"FROM scratch"}, 0},
		{"allows all forms of docker.io", []string{"docker.io"},
			[]string{"FROM ubuntu:18.04 AS builder1", "FROM zemanlx/ubuntu:18.04 AS builder2", "FROM docker.io/zemanlx/ubuntu:18.04 AS builder3"}, 0},
		{"allows using previous stages", []string{"random.com"},
			[]string{"FROM random.com/foo AS builder1", "FROM builder1 AS builder2"}, 0},
		{"warn on non-allowed wildcard registry", []string{"*.random.com"},
			[]string{"FROM x.com/debian"}, 1},
		{"does not warn on allowed wildcard registries", []string{"x.com", "*.random.com"},
			[]string{"FROM foo.random.com/debian"}, 0},
		{"does not warn on * registry", []string{"*"},
			[]string{"FROM ubuntu:18.04 AS builder1", "FROM zemanlx/ubuntu:18.04 AS builder2", "FROM docker.io/zemanlx/ubuntu:18.04 AS builder3"}, 0},
		{"does warn on copy from untrusted registry", []string{"trusted.com"},
			[]string{"COPY --from=untrusted.com/repo/image:tag /foo /bar"}, 1},
		{"does not warn on copy from untrusted registry", []string{"trusted.com"},
			[]string{"COPY --from=trusted.com/repo/image:tag /foo /bar"}, 0},
		{"warn on run with bind mount from untrusted registry", []string{"trusted.com"},
			[]string{"RUN --mount=type=bind,from=untrusted.com/repo/image:tag,target=/foo foobar"}, 1},
		{"warn on run with cache mount from untrusted registry", []string{"trusted.com"},
			[]string{"RUN --mount=type=cache,from=untrusted.com/repo/image:tag,target=/foo foobar"}, 1},
		{"don't warn on run with bind mount from trusted registry", []string{"trusted.com"},
			[]string{"RUN --mount=type=bind,from=trusted.com/repo/image:tag,target=/foo foobar"}, 0},
		{"don't warn on run with cache mount from trusted registry", []string{"trusted.com"},
			[]string{"RUN --mount=type=cache,from=trusted.com/repo/image:tag,target=/foo foobar"}, 0},
		{"distrust all forms of docker.io if trusted registries are given", []string{"trusted.com"},
			[]string{"FROM ubuntu:18.04 AS builder1", "FROM zemanlx/ubuntu:18.04 AS builder2", "FROM docker.io/zemanlx/ubuntu:18.04 AS builder3"}, 3},
		// The same trust written with Docker Hub's other names.
		{"allows all forms of docker.io, trusted as index.docker.io", []string{"index.docker.io"},
			[]string{"FROM ubuntu:18.04 AS builder1", "FROM zemanlx/ubuntu:18.04 AS builder2", "FROM registry-1.docker.io/zemanlx/ubuntu:18.04 AS builder3"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "default: allow\n"
			if len(tc.registries) > 0 {
				text = "default: deny\nallow:\n"
				for _, r := range tc.registries {
					pattern := r + "/**"
					if r == "*" {
						pattern = "**"
					}
					text += "  - image: \"" + pattern + "\"\n"
				}
			}
			p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(text)})
			if err != nil {
				t.Fatal(err)
			}
			// hadolint's cases with only COPY or RUN start in no stage.
			df := strings.Join(tc.dockerfile, "\n") + "\n"
			if !strings.HasPrefix(df, "FROM ") {
				df = "FROM scratch\n" + df
			}
			l := lint.Linter{Policy: p, Now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
			findings, err := l.Lint(t.Context(), "Dockerfile", lint.Dockerfile, []byte(df))
			if err != nil {
				t.Fatal(err)
			}
			denied := 0
			for _, f := range findings {
				if !f.Decision.Allowed {
					denied++
					t.Logf("denied: %s %s: %s", f.Source, f.Input, f.Decision.Reason)
				}
			}
			if denied != tc.denied {
				t.Errorf("%d images denied, hadolint finds %d", denied, tc.denied)
			}
		})
	}
}
