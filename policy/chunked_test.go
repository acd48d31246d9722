package policy

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/pullguard/pullguard/internal/policygen"
)

// smallRuns makes the tests' few-hundred-KB policies large and their runs
// short, so that many runs are read in little time.
func smallRuns(t *testing.T) {
	savedSize, savedItems := chunkedMinSize, chunkItems
	chunkedMinSize, chunkItems = 64<<10, 300
	t.Cleanup(func() { chunkedMinSize, chunkItems = savedSize, savedItems })
}

// parseBothWays parses text in runs and as one document.
func parseBothWays(t *testing.T, text string) (inRuns, whole *Policy, errRuns, errWhole error) {
	t.Helper()
	inRuns, errRuns = Parse(Source{Name: "big.yaml", Data: []byte(text)})
	saved := chunkedMinSize
	chunkedMinSize = 1 << 62
	defer func() { chunkedMinSize = saved }()
	whole, errWhole = Parse(Source{Name: "big.yaml", Data: []byte(text)})
	return
}

func sameRules(t *testing.T, a, b []*Rule) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d rules read in runs, %d as one document", len(a), len(b))
	}
	for i := range a {
		if !reflect.DeepEqual(a[i], b[i]) {
			t.Fatalf("rule %d differs:\nin runs  %s %s\nwhole    %s %s", i, a[i].Source, summarize(a[i]), b[i].Source, summarize(b[i]))
		}
	}
}

// TestLargeFileReadInRuns: a large file read a few thousand rules at a time
// makes exactly the policy the whole document makes, line numbers included.
func TestLargeFileReadInRuns(t *testing.T) {
	smallRuns(t)
	text := policygen.Organization(2000)
	// A deny list with comments, blank lines and items spread over lines.
	text += "  # the team's own\n\n  -\n    image: ghcr.io/x/**\n    tags:\n      - \"*-debug\"\n      - dev\n"
	text += "running: stop\n"
	if len(text) < chunkedMinSize {
		t.Fatalf("the fixture (%d bytes) is not large enough to be read in runs", len(text))
	}
	runs, whole, err1, err2 := parseBothWays(t, text)
	if err1 != nil || err2 != nil {
		t.Fatalf("errors: %v / %v", err1, err2)
	}
	sameRules(t, runs.Allow, whole.Allow)
	sameRules(t, runs.Deny, whole.Deny)
	if runs.Mode != whole.Mode || runs.Default != whole.Default || runs.Running != whole.Running || runs.DefaultSource != whole.DefaultSource || runs.Hash != whole.Hash {
		t.Fatalf("settings differ: %s / %s", runs.Describe(), whole.Describe())
	}
	if last := runs.Deny[len(runs.Deny)-1]; last.Source.Line != strings.Count(text, "\n")-4 || strings.Join(last.Tags, ",") != "*-debug,dev" {
		t.Errorf("last deny rule at line %d with tags %v", last.Source.Line, last.Tags)
	}
	for ref, want := range map[string]bool{
		"registry.corp.example.com/team0/service-0:1.2": true, "ghcr.io/team39/service-1951:v3": false,
		"registry.corp.example.com/team39/service-1950:v3": true, "ghcr.io/x/y:1-debug": false,
	} {
		if d := runs.Decide(ref, testNow); d.Allowed != want {
			t.Errorf("%s: allowed=%v, want %v (%s)", ref, d.Allowed, want, d.Reason)
		}
	}
}

// TestLargeFileProblemsAsWhole: whatever goes wrong in a large file is
// reported as the whole document reports it (aliases, which the loader
// refuses anyway, included).
func TestLargeFileProblemsAsWhole(t *testing.T) {
	smallRuns(t)
	base := policygen.Organization(2000)
	for name, text := range map[string]string{
		"bad rule deep inside":  strings.Replace(base, "service-1501\n", "service-1501\n    tagz: [x]\n", 1),
		"syntax error":          strings.Replace(base, "service-1703\n", "service-1703\n    tags: [\"v*\"\n", 1),
		"setting made twice":    base + "mode: audit\n",
		"anchor across runs":    strings.Replace(strings.Replace(base, "tags: [\"1.*\", \"2.*\"]", "tags: &t [\"1.*\", \"2.*\"]", 1), "service-1998\n    tags: [\"v*\", \"stable\"]", "service-1998\n    tags: *t", 1),
		"second document":       base + "---\nmode: audit\n",
		"flow list on its line": strings.Replace(base, "allow:\n", "allow: [{image: a/b}]\nx:\n", 1),
	} {
		t.Run(name, func(t *testing.T) {
			runs, whole, err1, err2 := parseBothWays(t, text)
			if fmt.Sprint(err1) != fmt.Sprint(err2) {
				t.Fatalf("in runs: %v\nwhole: %v", err1, err2)
			}
			if err1 == nil {
				sameRules(t, runs.Allow, whole.Allow)
				sameRules(t, runs.Deny, whole.Deny)
			}
		})
	}
}
