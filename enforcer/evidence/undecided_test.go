package evidence

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

// TestUndecidedIsBounded (issue 24): content whose provenance no registry
// answers for is kept and reported failed for the grace period, then
// treated as not vouched for, the reason saying since when; a definite
// answer in between starts the clock again.
func TestUndecidedIsBounded(t *testing.T) {
	p := parse(t, denyLocal)
	o := &origins{err: errDown}
	j := New(nil, o, quiet).WithGrace(10 * time.Minute)
	ghost := policy.Image{Names: []string{"reg.example/approved/ghost:1", "sha256:" + strings.Repeat("1", 64)}, Digest: d1}
	judge := func(img policy.Image, at time.Duration) policy.Verdict {
		return j.Pass(context.Background()).Judge(p, img, t0.Add(at))
	}
	for _, at := range []time.Duration{0, 5 * time.Minute, 10*time.Minute - time.Second} {
		if v := judge(ghost, at); v.Outcome != policy.Undecided {
			t.Fatalf("at +%s, within the grace: %s (%s), want undecided", at, v.Outcome, v.Decision.Reason)
		}
	}
	v := judge(ghost, 10*time.Minute)
	if v.Outcome != policy.Denied || v.Err != nil || v.Names[0].Outcome != policy.Denied || v.Names[1].Outcome != policy.Denied {
		t.Fatalf("past the grace: %s %+v, want denied", v.Outcome, v.Names)
	}
	since := t0.Format(time.RFC3339)
	if r := v.Decision.Reason; !v.Decision.ForWantOfProvenance() || !strings.Contains(r, "since "+since) || !strings.Contains(r, errDown.Error()) {
		t.Errorf("reason %q does not say that no registry answered since %s, and why", r, since)
	}
	// Other content has a clock of its own.
	other := policy.Image{Names: []string{"reg.example/approved/other:1"}, Digest: d2}
	if v := judge(other, 11*time.Minute); v.Outcome != policy.Undecided {
		t.Errorf("other content first undecided now: %s", v.Outcome)
	}
	// An answer comes: decided, and a later silence starts again.
	o.set(map[string]bool{}, nil)
	if v := judge(ghost, 12*time.Minute); v.Outcome != policy.Denied {
		t.Errorf("registry says not served: %s", v.Outcome)
	}
	o.set(nil, errDown)
	if v := judge(ghost, 13*time.Minute); v.Outcome != policy.Undecided {
		t.Errorf("after an answer, silent again: %s, want undecided", v.Outcome)
	}
}

// TestUndecidedBoundExceptions: without the bound (scan) undecided stays
// undecided; so does content a registry vouched for while the process ran
// (an outage does not condemn it), anything while pullguard has no network
// at all, and a name whose signature could not be verified.
func TestUndecidedBoundExceptions(t *testing.T) {
	p := parse(t, denyLocal)
	late := 24 * time.Hour
	ghost := policy.Image{Names: []string{"reg.example/approved/ghost:1"}, Digest: d1}
	twice := func(j *Judge, img policy.Image) policy.Verdict {
		if v := j.Pass(context.Background()).Judge(p, img, t0); v.Outcome != policy.Undecided {
			t.Fatalf("%v first judged: %s, want undecided", img.Names, v.Outcome)
		}
		return j.Pass(context.Background()).Judge(p, img, t0.Add(late))
	}
	if v := twice(New(nil, &origins{err: errDown}, quiet), ghost); v.Outcome != policy.Undecided {
		t.Errorf("unbounded: %s", v.Outcome)
	}
	noNet := fmt.Errorf("dial tcp: %w", syscall.EAFNOSUPPORT)
	if v := twice(New(nil, &origins{err: noNet}, quiet).WithGrace(time.Minute), ghost); v.Outcome != policy.Undecided {
		t.Errorf("no network: %s", v.Outcome)
	}

	reg := enforcertest.NewRegistry([2]string{"reg.example/approved/app", d1})
	clock := t0
	j := New(nil, provenance.New(reg).WithClock(func() time.Time { return clock }), quiet).WithGrace(time.Minute)
	if v := j.Pass(context.Background()).Judge(p, pulled, t0); v.Outcome != policy.Allowed {
		t.Fatalf("pulled: %s", v.Outcome)
	}
	reg.SetDown(true)
	clock = t0.Add(2 * provenance.ServedTTL) // the registry's yes has expired
	copied := policy.Image{Names: []string{"reg.example/approved/copy:1"}, Digest: d1}
	if v := twice(j, copied); v.Outcome != policy.Undecided {
		t.Errorf("content a registry vouched for, during an outage: %s (%s)", v.Outcome, v.Decision.Reason)
	}

	key, err := filepath.Abs("../../policy/testdata/keys/ed25519.pub")
	if err != nil {
		t.Fatal(err)
	}
	signed := parse(t, "mode: enforce\nlocal-images: deny\nallow:\n  - image: reg.example/approved/**\n    signed-by: [{key: "+key+"}]\n")
	sigs := enforcertest.NewSignatures(map[string]policy.SignatureStatus{d1: policy.SignatureUnverifiable})
	js := New(sigs, nil, quiet).WithGrace(time.Minute)
	js.Pass(context.Background()).Judge(signed, pulled, t0)
	if v := js.Pass(context.Background()).Judge(signed, pulled, t0.Add(late)); v.Outcome != policy.Undecided {
		t.Errorf("signature unverifiable: %s", v.Outcome)
	}
}

// TestRunning: content whose provenance is undecided is not run; a
// signature that could not be verified leaves the container undecided.
func TestRunning(t *testing.T) {
	p := parse(t, denyLocal)
	v := New(nil, &origins{err: errDown}, quiet).Pass(context.Background()).Judge(p, pulled, t0)
	r := Running(v)
	if v.Outcome != policy.Undecided || r.Outcome != policy.Denied || !r.Decision.ForWantOfProvenance() ||
		!strings.Contains(r.Decision.Reason, "could not be established") || Failure(r) != nil {
		t.Errorf("Running(%s) = %s (%s)", v.Outcome, r.Outcome, r.Decision.Reason)
	}
	noNet := New(nil, &origins{err: fmt.Errorf("x: %w", syscall.EAFNOSUPPORT)}, quiet).Pass(context.Background()).Judge(p, pulled, t0)
	if r := Running(noNet); r.Outcome != policy.Undecided {
		t.Errorf("no network: Running = %s", r.Outcome)
	}
}
