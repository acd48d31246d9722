package evidence

import (
	"context"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

// TestContainerdImageStore: on dockerd 29's containerd image store the
// made-up repository digests prove nothing; the registry's answer does; a
// digest name the policy denies is judged; a copy of pulled content under
// another allowed name is vouched for by where it came from; an
// unreachable registry leaves it undecided.
func TestContainerdImageStore(t *testing.T) {
	p := parse(t, denyLocal+"deny:\n  - image: reg.example/evil/**\n")
	reg := enforcertest.NewRegistry([2]string{"reg.example/approved/app", d1})
	j := New(nil, provenance.New(reg), quiet)
	judge := func(digest string, names ...string) policy.Verdict {
		return j.Pass(context.Background()).Judge(p, policy.Image{Names: names, Digest: digest}, t0)
	}
	if v := judge(d1, "reg.example/approved/app:1", "reg.example/approved/app@"+d1); v.Outcome != policy.Allowed ||
		v.VouchedBy != "reg.example/approved/app@"+d1 || !v.Names[1].SetAside {
		t.Errorf("pulled: %s, vouched by %q, %+v", v.Outcome, v.VouchedBy, v.Names)
	}
	v := judge(d2, "reg.example/approved/app:2", "reg.example/approved/app@"+d2, "reg.example/evil/x@"+d2)
	if v.Outcome != policy.Denied || !v.Names[0].Decision.ForWantOfProvenance() || v.Names[2].SetAside || v.Names[2].Decision.Rule == nil {
		t.Errorf("loaded: %s, %+v", v.Outcome, v.Names)
	}
	// The name it was pulled under moved: the repository that served it
	// still vouches for it.
	if v := judge(d1, "reg.example/approved/copy:1", "reg.example/approved/copy@"+d1); v.Outcome != policy.Allowed {
		t.Errorf("a copy of pulled content: %s (%s)", v.Outcome, v.Decision.Reason)
	}
	reg.SetDown(true)
	if v := judge(d2, "reg.example/approved/late:1"); v.Outcome != policy.Undecided || v.Err == nil {
		t.Errorf("registry down: %s, %v", v.Outcome, v.Err)
	}
}

// BenchmarkContainerdImageStore: what judging a Docker 29 image by its
// provenance costs once the registry's answer is known (every judgement
// after the first within the hour), against judging dockerd's names alone
// in the same run.
func BenchmarkContainerdImageStore(b *testing.B) {
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(denyLocal)})
	if err != nil {
		b.Fatal(err)
	}
	reg := enforcertest.NewRegistry([2]string{"reg.example/approved/app", d1})
	j := New(nil, provenance.New(reg), quiet)
	now := time.Now()
	listed := []string{"reg.example/approved/app:1", "reg.example/approved/copy:2", "reg.example/approved/app@" + d1, "reg.example/approved/copy@" + d1}
	b.Run("names-alone", func(b *testing.B) {
		for b.Loop() {
			if !p.DecideImage(listed, "", now).Allowed {
				b.Fatal("denied")
			}
		}
	})
	b.Run("provenance-known", func(b *testing.B) {
		for b.Loop() {
			if j.Pass(context.Background()).Judge(p, policy.Image{Names: listed, Digest: d1}, now).Outcome != policy.Allowed {
				b.Fatal("denied")
			}
		}
	})
	if reg.Asks() != 1 {
		b.Errorf("%d asks, want 1", reg.Asks())
	}
}
