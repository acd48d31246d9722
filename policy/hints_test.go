package policy

import (
	"fmt"
	"math/rand"
	"os"
	"strings"
	"testing"
)

// TestHintsGolden holds the resemblance hints of a fleet-sized policy to
// the ones recorded in testdata/hints.golden: a denied reference keeps the
// hint it had, whatever the index or the search becomes. The corpus mixes
// near misses of allowed names (dropped, added and swapped characters, an
// added suffix), look-alike hosts, and names near nothing.
func TestHintsGolden(t *testing.T) {
	memo := generatedPolicy(t, 1000)
	search := generatedPolicy(t, 1000)
	search.names.memo = nil
	for _, p := range []*Policy{search, memo, memo} { // the last from the memo
		t.Run("", func(t *testing.T) { testHintsGolden(t, p) })
	}
}

func testHintsGolden(t *testing.T, p *Policy) {
	hosts := []string{"registry.corp.example.com", "ghcr.io", "quay.io", "docker.io", "eu.mirror.example.net:5000"}
	rng := rand.New(rand.NewSource(10))
	var b strings.Builder
	denied, hinted := 0, 0
	for i := 0; i < 1500; i++ {
		r := rng.Intn(998)
		h, path := hosts[r%len(hosts)], fmt.Sprintf("team%d/app%d", r/10, r)
		switch rng.Intn(5) {
		case 0:
			h = mutate(rng, h)
		case 1:
			path += "-x"
		case 2:
			path = []string{"nginx", "library/redis", "ngnix", "myorg/base", "team5/ap"}[rng.Intn(5)]
		default:
			path = mutate(rng, path)
		}
		in := h + "/" + strings.Trim(path, "/") + ":1." + fmt.Sprint(i)
		d := p.Decide(in, testNow)
		if d.Allowed {
			continue
		}
		denied++
		hint := d.Resembles
		if hint != "" {
			hinted++
		} else {
			hint = "-"
		}
		fmt.Fprintf(&b, "%s %s\n", in, hint)
	}
	if denied < 900 || hinted < denied/3 {
		t.Fatalf("%d denials, %d with a hint: the corpus exercises too little", denied, hinted)
	}
	const golden = "testdata/hints.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	got, wantLines := strings.Split(b.String(), "\n"), strings.Split(string(want), "\n")
	for i := range min(len(got), len(wantLines)) {
		if got[i] != wantLines[i] {
			t.Fatalf("line %d: got %q, want %q", i+1, got[i], wantLines[i])
		}
	}
	if len(got) != len(wantLines) {
		t.Fatalf("%d lines, want %d", len(got), len(wantLines))
	}
}
