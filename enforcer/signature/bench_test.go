package signature

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/policy"
)

// BenchmarkVerifyCached is a verification answered from the cache (a
// reconcile or a retried pull asking again), and a whole decision for a
// signed-by rule with the answer cached. The baseline, measured in the
// same run, is the policy's decision for a rule without signed-by.
// Goal: a cached verification in at most 5 µs.
func BenchmarkVerifyCached(b *testing.B) {
	p := signedPolicy(b, "registry.example.com")
	v := New(registry.New(registry.Options{}))
	const digest = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	ks := p.Allow[0].SignedBy
	repo := "registry.example.com/signed/app"
	v.cache.store(repo+"@"+digest+"#"+ks.ID, policy.SignatureResult{Status: policy.SignatureVerified, Key: ks.Keys[0], Reason: "signed"})
	ctx := context.Background()
	signedRef := repo + "@" + digest
	openRef := "registry.example.com/open/app@" + digest
	if d := Decide(ctx, v, p, signedRef, testNow); !d.Allowed {
		b.Fatalf("cached verified answer not used: %s", d.Reason)
	}

	const batch = 64
	var verifyT, decideT, baseT []float64
	timeIt := func(f func()) float64 {
		start := time.Now()
		for i := 0; i < batch; i++ {
			f()
		}
		return float64(time.Since(start).Nanoseconds()) / batch
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i += batch {
		verifyT = append(verifyT, timeIt(func() { v.Verify(ctx, repo, digest, ks) }))
		decideT = append(decideT, timeIt(func() { Decide(ctx, v, p, signedRef, testNow) }))
		baseT = append(baseT, timeIt(func() { p.Decide(openRef, testNow) }))
	}
	v50, v99 := percentiles(verifyT)
	d50, d99 := percentiles(decideT)
	b50, b99 := percentiles(baseT)
	b.ReportMetric(v50, "p50-ns/verify")
	b.ReportMetric(v99, "p99-ns/verify")
	b.ReportMetric(d50, "p50-ns/signed-decision")
	b.ReportMetric(d99, "p99-ns/signed-decision")
	b.ReportMetric(b50, "p50-ns/baseline-decision")
	b.ReportMetric(b99, "p99-ns/baseline-decision")
	b.ReportMetric(d50/b50, "ratio-signed/baseline")
	b.ReportMetric(0, "ns/op")
}

func percentiles(xs []float64) (p50, p99 float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	sort.Float64s(xs)
	return xs[len(xs)/2], xs[(len(xs)*99)/100]
}
