package policy

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/distribution/reference"

	"github.com/pullguard/pullguard/internal/policygen"
)

// generatedPolicy builds a policy of n rules shaped like a real fleet's
// (see policygen.Fleet).
func generatedPolicy(tb testing.TB, n int) *Policy {
	tb.Helper()
	p, err := Parse(Source{Name: "bench.yaml", Data: []byte(policygen.Fleet(n))})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// benchRefs are the references decided: allowed and denied, literal and
// glob matches, so no single lucky path is measured.
func benchRefs(n int) []string {
	last := n - 3
	return []string{
		fmt.Sprintf("registry.corp.example.com/team%d/app%d:1.0", last/10, last-(last%10)+5),
		"ghcr.io/team1/svc-api:2.3",
		"registry.corp.example.com/team0/a/b:1.0",
		"quay.io/unknown/app:1.0",
		"nginx:latest",
		"registry.corp.example.com.evil.io/team0/x:1",
	}
}

func BenchmarkDecide(b *testing.B) {
	now := time.Now()
	for _, n := range []int{10, 100, 1000} {
		p := generatedPolicy(b, n)
		refs := benchRefs(n)
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				_ = p.Decide(refs[i%len(refs)], now)
			}
		})
	}
}

// BenchmarkDecideLatency reports the median and 99th percentile of one
// decision against 10 and 1,000 rules, and the ratio of the two medians:
// the matcher must not slow down with the number of rules.
func BenchmarkDecideLatency(b *testing.B) {
	now := time.Now()
	small, large := generatedPolicy(b, 10), generatedPolicy(b, 1000)
	rs, rl := benchRefs(10), benchRefs(1000)
	b.ReportAllocs()
	const batch = 64
	var smallT, largeT []float64
	for i := 0; i < b.N; i += batch {
		smallT = append(smallT, timeBatch(small, rs, batch, now))
		largeT = append(largeT, timeBatch(large, rl, batch, now))
	}
	p50s, _ := percentiles(smallT)
	p50l, p99l := percentiles(largeT)
	b.ReportMetric(p50l, "p50-ns/decision")
	b.ReportMetric(p99l, "p99-ns/decision")
	b.ReportMetric(p50s, "p50-10rules-ns/decision")
	b.ReportMetric(p50l/p50s, "ratio-1000/10")
	b.ReportMetric(0, "ns/op")
}

func timeBatch(p *Policy, refs []string, n int, now time.Time) float64 {
	start := time.Now()
	for i := 0; i < n; i++ {
		_ = p.Decide(refs[i%len(refs)], now)
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

func percentiles(xs []float64) (p50, p99 float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	sort.Float64s(xs)
	return xs[len(xs)/2], xs[(len(xs)*99)/100]
}

// BenchmarkDecideFirstSight measures a reference never seen before: the
// reference grammar's parser runs. BenchmarkParseBaseline is that parser
// alone, for the ratio.
func BenchmarkDecideFirstSight(b *testing.B) {
	p := generatedPolicy(b, 1000)
	now := time.Now()
	inputs := make([]string, 4096)
	for i := range inputs {
		inputs[i] = fmt.Sprintf("registry.corp.example.com/team%d/app%d:1.%d", i%100, i, i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%len(inputs) == 0 {
			p.cache = newRefCache(refCacheSize) // every input unseen again
			p.names.memo = newHintMemo()        // and every hint searched for
		}
		_ = p.Decide(inputs[i%len(inputs)], now)
	}
}

func BenchmarkParseBaseline(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_, _ = reference.ParseNormalizedNamed("registry.corp.example.com/team1/app1:1.0")
	}
}

// hintRefs are denials that carry a resemblance hint in every generated
// policy: a dropped letter, an extra digit, a look-alike host.
var hintRefs = []string{"quay.io/team0/ap2:1.0", "docker.io/team0/app33:1.0", "ghrc.io/team0/app6:1.0"}

// BenchmarkDenialWithHint reports the median and 99th percentile of one
// denial that carries a resemblance hint, at 10, 1,000 and 10,000 rules,
// and the ratio of the medians at 10,000 and 10 rules: finding near misses
// must not compare a name with every allowed one. The memo of recent hints
// is off, so that every denial searches.
func BenchmarkDenialWithHint(b *testing.B) {
	now := time.Now()
	sizes := []int{10, 1000, 10000}
	policies := make([]*Policy, len(sizes))
	for i, n := range sizes {
		policies[i] = generatedPolicy(b, n)
		policies[i].names.memo = nil
		for _, r := range hintRefs {
			if d := policies[i].Decide(r, now); d.Allowed || d.Resembles == "" {
				b.Fatalf("%d rules: %s: allowed=%v resembles=%q, want a denial with a hint", n, r, d.Allowed, d.Resembles)
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer() // building three policies is not the decision
	const batch = 64
	times := make([][]float64, len(sizes))
	for i := 0; i < b.N; i += batch {
		for j, p := range policies {
			times[j] = append(times[j], timeBatch(p, hintRefs, batch, now))
		}
	}
	var p50s []float64
	for j, n := range sizes {
		p50, p99 := percentiles(times[j])
		p50s = append(p50s, p50)
		b.ReportMetric(p50, fmt.Sprintf("p50-ns/%drules", n))
		b.ReportMetric(p99, fmt.Sprintf("p99-ns/%drules", n))
	}
	b.ReportMetric(p50s[2]/p50s[0], "ratio-10000/10")
	b.ReportMetric(0, "ns/op")
}
