package provenance

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func denyPolicy(t *testing.T) *policy.Policy { return denyPolicyTB(t) }

func denyPolicyTB(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte("mode: enforce\nlocal-images: deny\nallow:\n  - image: reg.example/approved/**\n")})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCacheLifetimes: a yes is kept for long, a no briefly, an error not at
// all.
func TestCacheLifetimes(t *testing.T) {
	reg := enforcertest.NewRegistry([2]string{"r/a", d1})
	now := time.Unix(0, 0)
	c := New(reg).WithClock(func() time.Time { return now })
	ctx := context.Background()
	for range 2 {
		if ok, err := c.Served(ctx, "r/a", d1); !ok || err != nil {
			t.Fatalf("Served = %v, %v", ok, err)
		}
		if ok, err := c.Served(ctx, "r/b", d1); ok || err != nil {
			t.Fatalf("Served = %v, %v", ok, err)
		}
	}
	if n := reg.Asks(); n != 2 {
		t.Errorf("%d asks, want 2 (answers cached)", n)
	}
	now = now.Add(NotServedTTL + time.Second)
	c.Served(ctx, "r/a", d1)
	c.Served(ctx, "r/b", d1)
	if n := reg.Asks(); n != 3 {
		t.Errorf("%d asks, want 3 (only the no expired)", n)
	}
	reg.SetDown(true)
	for range 2 {
		if _, err := c.Served(ctx, "r/c", d1); err == nil {
			t.Errorf("no error while the registry is down")
		}
	}
	if n := reg.Asks(); n != 5 {
		t.Errorf("%d asks, want 5 (errors not cached)", n)
	}
}

// TestDockerNames: dockerd 29's made-up repository digests are set aside;
// the registry's answers take their place; a digest name the policy denies
// stays to be judged; one repository's yes is enough; an unreachable
// registry is unknown, not a no.
func TestDockerNames(t *testing.T) {
	p, ctx, now := denyPolicy(t), context.Background(), time.Now()
	reg := enforcertest.NewRegistry([2]string{"reg.example/approved/app", d1})
	c := New(reg)

	names, ev := c.DockerNames(ctx, p, now, d1, []string{"reg.example/approved/app:1", "reg.example/approved/app@" + d1}, nil)
	if ev.Unknown != nil || !slices.Equal(names, []string{"reg.example/approved/app:1", "reg.example/approved/app@" + d1}) {
		t.Errorf("pulled: names %q, unknown %v", names, ev.Unknown)
	}
	if !p.DecideImage(names, "", now).Allowed {
		t.Errorf("pulled content denied")
	}

	names, ev = c.DockerNames(ctx, p, now, d2, []string{"reg.example/approved/app:2", "reg.example/approved/app@" + d2, "reg.example/evil/x@" + d2}, nil)
	if ev.Unknown != nil || !slices.Equal(names, []string{"reg.example/approved/app:2", "reg.example/evil/x@" + d2}) {
		t.Errorf("loaded: names %q, unknown %v", names, ev.Unknown)
	}
	if d := p.DecideImage(names, "", now); d.Allowed || !d.Names[0].Decision.ForWantOfProvenance() {
		t.Errorf("loaded content: %+v", d)
	}

	// Re-tagged pulled content, after the name it was pulled under moved:
	// the repository that served it still vouches for it.
	names, _ = c.DockerNames(ctx, p, now, d1, []string{"reg.example/approved/copy:1", "reg.example/approved/copy@" + d1}, nil)
	if !p.DecideImage(names, "", now).Allowed {
		t.Errorf("the copy of pulled content is denied: names %q", names)
	}

	reg.SetDown(true)
	_, ev = c.DockerNames(ctx, p, now, d2, []string{"reg.example/approved/late:1"}, nil)
	if ev.Unknown == nil {
		t.Errorf("no unknown while the registry is down")
	}
}

// BenchmarkDockerNames: what judging a Docker 29 image by its provenance
// costs once the registry's answer is cached (every judgement after the
// first within the hour): DockerNames and the decision on its names,
// against the decision on dockerd's names alone in the same run.
func BenchmarkDockerNames(b *testing.B) {
	p := denyPolicyTB(b)
	reg := enforcertest.NewRegistry([2]string{"reg.example/approved/app", d1})
	c := New(reg)
	ctx, now := context.Background(), time.Now()
	listed := []string{"reg.example/approved/app:1", "reg.example/approved/copy:2", "reg.example/approved/app@" + d1, "reg.example/approved/copy@" + d1}
	b.Run("names-alone", func(b *testing.B) {
		defer cpuPerOp(b)()
		for b.Loop() {
			if !p.DecideImage(listed, "", now).Allowed {
				b.Fatal("denied")
			}
		}
	})
	b.Run("provenance-cached", func(b *testing.B) {
		defer cpuPerOp(b)()
		for b.Loop() {
			names, _ := c.DockerNames(ctx, p, now, d1, listed, nil)
			if !p.DecideImage(names, "", now).Allowed {
				b.Fatal("denied")
			}
		}
	})
	if reg.Asks() != 1 {
		b.Errorf("%d asks, want 1", reg.Asks())
	}
}

// cpuPerOp reports the process's CPU time (user and system) per operation
// as cpu-ns/op when the returned function is called: on a shared, loaded
// machine a steadier figure than wall time.
func cpuPerOp(b *testing.B) func() {
	cpu := func() int64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op") }
}

// TestPassAsksOnce: within one pass a question the registry failed to
// answer is not asked again; the next pass asks again.
func TestPassAsksOnce(t *testing.T) {
	reg := enforcertest.NewRegistry()
	reg.SetDown(true)
	c := New(reg)
	ctx := WithPass(context.Background())
	for range 3 {
		if _, err := c.Served(ctx, "r/a", d1); err == nil {
			t.Fatal("no error from a registry that is down")
		}
	}
	if n := reg.Asks(); n != 1 {
		t.Errorf("%d asks in one pass, want 1", n)
	}
	if _, err := c.Served(WithPass(context.Background()), "r/a", d1); err == nil || reg.Asks() != 2 {
		t.Errorf("the next pass did not ask again: %v, %d asks", err, reg.Asks())
	}
}
