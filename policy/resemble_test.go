package policy

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

func TestResemblesHosts(t *testing.T) {
	p := loadFixture(t, "decide.yaml")
	for _, tc := range []struct{ input, resembles string }{
		{"ghrc.io/acme/tool:v2", "ghcr.io/acme/tool"},                                       // the rule the reference imitates
		{"ghrc.io/someone/else:1", "ghcr.io"},                                               // only the host is imitated
		{"registry.corp.exmaple.com/approved/x:1", "registry.corp.example.com/approved/**"}, // a transposition
		{"registrycorp.example.com/approved/x:1", "registry.corp.example.com/approved/**"},  // equal but for separators
		{"registry-corp.example.com/other:1", "registry.corp.example.com"},
		{"quay.oi/a/stable-base:1", "quay.io/**/stable-base"},
		{"GHRC.IO:443/acme/tool:v2", "ghcr.io/acme/tool"}, // compared in its canonical spelling
		{"localhost:5001/approved/busybox:1.0", "localhost:5000/approved/*"},
		{"evil.example.org/acme/tool:v2", ""},
		{"ghcr.evil.io/acme/tool:v2", ""},
	} {
		d := p.Decide(tc.input, testNow)
		if d.Allowed || d.Resembles != tc.resembles {
			t.Errorf("%s: allowed=%v resembles=%q, want denied resembling %q", tc.input, d.Allowed, d.Resembles, tc.resembles)
		}
	}
}

// bruteResembling is the hint by comparing with every allowed name: what
// the index must answer, without the index.
func bruteResembling(p *Policy, ref *Ref) string {
	ix := p.names
	if id, ok := ix.hostIDs[ref.Domain]; ok {
		path := familiarPath(ref.Domain, ref.Path)
		for i, r := range p.Allow {
			if ix.ruleHost[i] != id {
				continue
			}
			shape := ix.ruleShape[i]
			q, ok := pathPrefix(path, shape)
			if !ok {
				continue
			}
			name, _ := ruleName(p.Allow[i], ref.Domain, shape)
			if name != q && (squash(name) == squash(q) || withinTwoEdits(name, q)) {
				return r.Pattern
			}
		}
		return ""
	}
	for _, h := range ix.hosts {
		if squash(h) == squash(ref.Domain) || withinTwoEdits(h, ref.Domain) {
			real := *ref
			real.Domain = h
			m := matcher{rules: p.Allow, ref: real, now: testNow}
			m.run(p.allowIdx)
			if m.best >= 0 {
				return p.Allow[m.best].Pattern
			}
			return h
		}
	}
	return ""
}

// mutate makes a near or not so near miss of s: up to three random edits.
func mutate(rng *rand.Rand, s string) string {
	const alphabet = "abcdeghimnoprst0123-._/"
	b := []byte(s)
	for n := rng.Intn(4); n > 0; n-- {
		i := rng.Intn(len(b) + 1)
		c := alphabet[rng.Intn(len(alphabet))]
		switch rng.Intn(4) {
		case 0:
			b = append(b[:i], append([]byte{c}, b[i:]...)...)
		case 1:
			if i < len(b) {
				b = append(b[:i], b[i+1:]...)
			}
		case 2:
			if i < len(b) {
				b[i] = c
			}
		default:
			if i+1 < len(b) {
				b[i], b[i+1] = b[i+1], b[i]
			}
		}
	}
	return string(b)
}

// TestResemblesIndexMatchesBruteForce: on a fleet-sized policy, the index
// finds exactly what comparing with every name finds, for thousands of
// mutations of allowed names and hosts.
func TestResemblesIndexMatchesBruteForce(t *testing.T) {
	p := generatedPolicy(t, 2000)
	rng := rand.New(rand.NewSource(1))
	hosts := []string{"registry.corp.example.com", "ghcr.io", "quay.io", "docker.io", "eu.mirror.example.net:5000"}
	checked, hinted := 0, 0
	for i := 0; i < 6000; i++ {
		h := hosts[rng.Intn(len(hosts))]
		path := fmt.Sprintf("team%d/app%d", rng.Intn(200), rng.Intn(2000))
		if rng.Intn(3) == 0 {
			h = mutate(rng, h)
		} else {
			path = mutate(rng, path)
		}
		ref, err := ParseRef(h + "/" + strings.Trim(path, "/") + ":1")
		if err != nil {
			continue
		}
		checked++
		got, want := p.resembling(&ref, testNow), bruteResembling(p, &ref)
		if got != want {
			t.Fatalf("%s: index says %q, comparing every name says %q", ref.String, got, want)
		}
		if got != "" {
			hinted++
		}
	}
	if checked < 3000 || hinted < checked/10 {
		t.Fatalf("only %d references checked, %d with a hint: the test exercises too little", checked, hinted)
	}
	t.Logf("%d references, %d with a hint", checked, hinted)
}

// levenshtein is the textbook full table, to check the banded one against.
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func FuzzWithinTwoEdits(f *testing.F) {
	for _, p := range [][2]string{{"myorg/base", "myorg-base"}, {"nginx", "ngnix"}, {"", "ab"}, {"abc", ""}, {"ghcr.io", "ghrc.io"}, {"team1/app12", "team1/ap12"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if len(a) > 300 || len(b) > 300 {
			return
		}
		if got, want := withinTwoEdits(a, b), levenshtein(a, b) <= 2; got != want {
			t.Fatalf("withinTwoEdits(%q, %q) = %v, distance %d", a, b, got, levenshtein(a, b))
		}
	})
}
