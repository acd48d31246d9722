package policy

import (
	"testing"
	"time"
)

// BenchmarkDecideImageProvenance is the cost of local-images: deny in the
// one image decision: a pulled Docker image (tags and the repository
// digest Docker recorded) and a loaded one (a tag alone), decided with a
// 1,000-rule policy under deny and, as the same-run baseline, under allow.
// It reports median and 99th percentile per decision and the ratio of the
// medians.
func BenchmarkDecideImageProvenance(b *testing.B) {
	now := time.Now()
	deny := generatedPolicy(b, 1000)
	allow := deny.namesOnly()
	images := [][]string{
		{"registry.corp.example.com/team0/app5:1.0", "registry.corp.example.com/team0/copy:2",
			"registry.corp.example.com/team0/app5@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
		{"registry.corp.example.com/team0/app5:loaded"},
	}
	time1 := func(p *Policy) float64 {
		const n = 64
		start := time.Now()
		for i := 0; i < n; i++ {
			_ = p.DecideImage(images[i%len(images)], "", now)
		}
		return float64(time.Since(start).Nanoseconds()) / n
	}
	b.ReportAllocs()
	var denyT, allowT []float64
	for i := 0; i < b.N; i += 64 {
		denyT = append(denyT, time1(deny))
		allowT = append(allowT, time1(allow))
	}
	p50d, p99d := percentiles(denyT)
	p50a, p99a := percentiles(allowT)
	b.ReportMetric(p50d, "p50-deny-ns/image")
	b.ReportMetric(p99d, "p99-deny-ns/image")
	b.ReportMetric(p50a, "p50-allow-ns/image")
	b.ReportMetric(p99a, "p99-allow-ns/image")
	b.ReportMetric(p50d/p50a, "ratio-deny/allow")
	b.ReportMetric(0, "ns/op")
}
