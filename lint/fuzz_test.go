package lint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullguard/pullguard/policy"
)

// FuzzDockerfile: no Dockerfile or --build-arg value panics, and the
// findings fail closed (checkFailsClosed) under a policy that allows every
// parsable reference; nor does one make lint allocate more than a bounded
// multiple of its size (expansion bombs, expand.go).
func FuzzDockerfile(f *testing.F) {
	p := allowAll(f)
	seeds, _ := filepath.Glob("testdata/corpus/*/*Dockerfile*")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data), "localhost:5000/x")
	}
	for _, s := range []string{
		"FROM $A\n", "ARG A\nFROM ${A:-x}\n", "FROM scratch\nCOPY --from=$A / /\n", "# escape=`\nFROM a `\n AS b\n",
		"FROM a AS b\nRUN --mount=from=b,target=/x --mount=from=c:1,target=/y true\n", "FROM a\nCOPY <<EOF /x\nFROM b\nEOF\n",
		"# syntax=$A\nFROM a\n", "ARG A=b\nARG B=${A}${A}\nFROM $B:1\nFROM ${B%%:*}\n",
		doublingBomb("$A", 24), "ARG B=${A//?/${A//?/${A//?/$A$A}}}\nFROM ${B//?/$B}\n",
	} {
		f.Add(s, "")
	}
	f.Add(doublingBomb("x", 24), strings.Repeat("x", 4000))
	f.Fuzz(func(t *testing.T, src, arg string) {
		l := &Linter{Policy: p, Now: testNow, BuildArgs: map[string]string{"A": arg}}
		var (
			fs  []Finding
			err error
		)
		n := allocated(func() { fs, err = l.Lint(t.Context(), "Dockerfile", Dockerfile, []byte(src)) })
		checkFailsClosed(t, fs, err)
		if limit := uint64(64*(len(src)+len(arg))) + 64<<20; n > limit {
			t.Fatalf("allocated %d bytes for %d bytes of input, over %d", n, len(src)+len(arg), limit)
		}
	})
}

// allowAll is a policy that allows every parsable reference, so that only
// lint's fail-closed handling can deny.
func allowAll(f *testing.F) *policy.Policy {
	p, err := policy.Parse(policy.Source{Name: "allow-all.yaml", Data: []byte("default: allow\n")})
	if err != nil {
		f.Fatal(err)
	}
	return p
}

// checkFailsClosed: an input that does not parse yields a ParseError and
// no findings; every finding has a line and a source; nothing unresolved
// is allowed, and what is allowed has a reference that parses.
func checkFailsClosed(t *testing.T, fs []Finding, err error) {
	t.Helper()
	if err != nil {
		var pe *ParseError
		if !errors.As(err, &pe) || fs != nil {
			t.Fatalf("error %v (%T) with %d findings", err, err, len(fs))
		}
		return
	}
	for _, f := range fs {
		d := f.Decision
		if f.Line < 1 || f.Source == "" {
			t.Fatalf("finding without a position or source: %+v", f)
		}
		if f.Unresolved && (d.Allowed || d.Reference != "") {
			t.Fatalf("unresolved %q allowed or given a reference: %+v", f.Input, f)
		}
		if !d.Allowed {
			continue
		}
		if d.Reference == "" {
			t.Fatalf("%s %q allowed without a parsed reference", f.Source, f.Input)
		}
		if _, err := policy.ParseRef(d.Reference); err != nil {
			t.Fatalf("%s %q allowed as %q, which does not parse: %v", f.Source, f.Input, d.Reference, err)
		}
	}
}

// FuzzManifests: the same for Compose files and Kubernetes manifests.
func FuzzManifests(f *testing.F) {
	p := allowAll(f)
	for _, pattern := range []string{"testdata/corpus/*/*.y*ml", "testdata/corpus/*/*/*.y*ml"} {
		seeds, _ := filepath.Glob(pattern)
		for _, s := range seeds {
			data, err := os.ReadFile(s)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(string(data), false)
			f.Add(string(data), true)
		}
	}
	f.Add("x: &x {apiVersion: v1, kind: Pod, spec: {containers: [{name: a, image: b}]}}\nitems: [*x, *x]\napiVersion: v1\nkind: List\n", false)
	f.Add("services:\n  a: &a {image: x}\n  b: {<<: [*a, *a]}\n", true)
	f.Fuzz(func(t *testing.T, src string, compose bool) {
		kind := Kubernetes
		if compose {
			kind = Compose
		}
		l := &Linter{Policy: p, Now: testNow}
		fs, err := l.Lint(t.Context(), "f.yaml", kind, []byte(src))
		checkFailsClosed(t, fs, err)
	})
}
