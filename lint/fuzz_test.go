package lint

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pullguard/pullguard/policy"
)

// FuzzDockerfile: no Dockerfile or --build-arg value panics, a file that
// does not parse yields a ParseError and no findings, and nothing
// unresolved or unparsable is allowed — under a policy that allows every
// parsable reference, so that only fail-closed handling can deny.
func FuzzDockerfile(f *testing.F) {
	p, err := policy.Parse(policy.Source{Name: "allow-all.yaml", Data: []byte("default: allow\n")})
	if err != nil {
		f.Fatal(err)
	}
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
	} {
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, src, arg string) {
		l := &Linter{Policy: p, Now: testNow, BuildArgs: map[string]string{"A": arg}}
		fs, err := l.Lint("Dockerfile", Dockerfile, []byte(src))
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
	})
}
