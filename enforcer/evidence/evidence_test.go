package evidence

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// origins is an Origins whose answers a test sets, counting the questions.
type origins struct {
	mu     sync.Mutex
	served map[string]bool // repository@digest
	err    error
	asks   int
}

func (o *origins) Served(_ context.Context, repository, digest string) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.asks++
	if o.err != nil {
		return false, o.err
	}
	return o.served[repository+"@"+digest], nil
}

func (o *origins) Origins(string) []string { return nil }

func (o *origins) set(served map[string]bool, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.served, o.err = served, err
}

func (o *origins) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.asks
}

func parse(t *testing.T, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const denyLocal = "mode: enforce\nlocal-images: deny\nallow:\n  - image: reg.example/approved/**\n"

var (
	t0      = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	pulled  = policy.Image{Names: []string{"reg.example/approved/app:1"}, Digest: d1}
	quiet   = logrus.New()
	errDown = errors.New("dial tcp 127.0.0.1:5000: connection refused")
	served1 = map[string]bool{"reg.example/approved/app@" + d1: true}
)

// TestVerdictCache: a verdict is kept only when verified evidence decided
// it, and a hit is only ever the same question under the same policy.
func TestVerdictCache(t *testing.T) {
	p := parse(t, denyLocal)
	o := &origins{}
	j := New(nil, o, quiet)
	judge := func(p *policy.Policy, img policy.Image, now time.Time) policy.Verdict {
		return j.Pass(context.Background()).Judge(p, img, now)
	}
	step := func(name string, p *policy.Policy, img policy.Image, now time.Time, want policy.Outcome, wantAsks int) {
		t.Helper()
		before := o.count()
		v := judge(p, img, now)
		if v.Outcome != want {
			t.Errorf("%s: %s, want %s (%s)", name, v.Outcome, want, v.Decision.Reason)
		}
		if n := o.count() - before; n != wantAsks {
			t.Errorf("%s: %d questions, want %d", name, n, wantAsks)
		}
	}
	o.set(nil, errDown)
	step("registry down", p, pulled, t0, policy.Undecided, 1)
	step("still down: an undecided verdict is not kept", p, pulled, t0, policy.Undecided, 1)
	o.set(nil, nil)
	step("not served", p, pulled, t0, policy.Denied, 1)
	step("a denial on a no is not kept", p, pulled, t0, policy.Denied, 1)
	o.set(served1, nil)
	step("served", p, pulled, t0, policy.Allowed, 1)
	step("the verified verdict is kept", p, pulled, t0.Add(time.Minute), policy.Allowed, 0)
	o.set(nil, nil) // the repository stops serving it: an hour later it is asked again
	step("the kept verdict lasts an hour", p, pulled, t0.Add(verdictTTL+time.Second), policy.Denied, 1)

	t1 := t0.Add(2 * verdictTTL)
	o.set(served1, nil)
	step("served again", p, pulled, t1, policy.Allowed, 1)
	more := policy.Image{Names: []string{"reg.example/approved/app:1", "reg.example/approved/other:2"}, Digest: d1}
	o.set(nil, nil)
	step("other names are another question", p, more, t1, policy.Denied, 2)
	reloaded := parse(t, denyLocal+"  - image: reg.example/more/**\n")
	step("another policy is another question", reloaded, pulled, t1, policy.Denied, 1)
	names := policy.Image{Names: pulled.Names, Digest: d1, DigestNamesProveOrigin: true}
	step("a store whose digest names prove origin is another question", p, names, t1, policy.Denied, 0)
	step("other content is another question", p, policy.Image{Names: pulled.Names, Digest: d2}, t1, policy.Denied, 1)
}

// TestVerdictCacheRuleExpiry: a kept verdict does not outlive a rule of
// its policy that expires, which could change it with no new evidence.
func TestVerdictCacheRuleExpiry(t *testing.T) {
	p := parse(t, "mode: enforce\nlocal-images: deny\nallow:\n  - image: reg.example/approved/app\n    expires: 2026-06-01T00:30:00Z\n"+
		"  - image: reg.example/approved/other\n")
	o := &origins{served: served1}
	j := New(nil, o, quiet)
	for _, now := range []time.Time{t0, t0.Add(10 * time.Minute)} {
		if v := j.Pass(context.Background()).Judge(p, pulled, now); v.Outcome != policy.Allowed {
			t.Fatalf("before expiry: %s", v.Outcome)
		}
	}
	if o.count() != 1 {
		t.Fatalf("%d questions before expiry, want 1 (kept)", o.count())
	}
	if v := j.Pass(context.Background()).Judge(p, pulled, t0.Add(time.Hour-time.Minute)); v.Outcome == policy.Allowed {
		t.Errorf("after the rule expired the kept verdict still allows: %s", v.Decision.Reason)
	}
}

// TestVerdictCacheSignatures: only a verified signature is kept with its
// verdict; a missing one is asked again.
func TestVerdictCacheSignatures(t *testing.T) {
	key, err := filepath.Abs("../../policy/testdata/keys/ed25519.pub")
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, "mode: enforce\nlocal-images: allow\nallow:\n  - image: reg.example/approved/**\n    signed-by: [{key: "+key+"}]\n")
	sigs := &countingSignatures{Signatures: enforcertest.NewSignatures(map[string]policy.SignatureStatus{d1: policy.SignatureMissing})}
	j := New(sigs, nil, quiet)
	judge := func() policy.Outcome { return j.Pass(context.Background()).Judge(p, pulled, t0).Outcome }
	if o := judge(); o != policy.Denied {
		t.Fatalf("unsigned: %s", o)
	}
	judge()
	if n := sigs.count(); n != 2 {
		t.Errorf("%d questions for a missing signature, want 2 (not kept)", n)
	}
	sigs.Set(d1, policy.SignatureVerified)
	for range 3 {
		if o := judge(); o != policy.Allowed {
			t.Fatalf("signed: %s", o)
		}
	}
	if n := sigs.count(); n != 3 {
		t.Errorf("%d questions, want 3 (the verified verdict kept)", n)
	}
}

type countingSignatures struct {
	*enforcertest.Signatures
	mu sync.Mutex
	n  int
}

func (c *countingSignatures) Source(context.Context) policy.SignatureSource { return c }

func (c *countingSignatures) Signature(ref policy.Ref, keys *policy.KeySet) policy.SignatureResult {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.Signatures.Signature(ref, keys)
}

func (c *countingSignatures) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// TestNoNetworkWarnedOnce: a pullguard that may not use the network is
// told once, not at every image; its images are undecided.
func TestNoNetworkWarnedOnce(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	o := &origins{err: fmt.Errorf("dial tcp: %w", syscall.EAFNOSUPPORT)}
	j := New(nil, o, log)
	for range 3 {
		v := j.Pass(context.Background()).Judge(parse(t, denyLocal), pulled, t0)
		if v.Outcome != policy.Undecided || ActOn(v, 0) != Fail {
			t.Errorf("without network: %s, act %d", v.Outcome, ActOn(v, 0))
		}
		if err := Failure(v); err == nil || !strings.Contains(err.Error(), "nothing removed") {
			t.Errorf("failure = %v", err)
		}
	}
	warned := 0
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "no network for pullguard") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("warned %d times, want once", warned)
	}
}

// TestNoRegistry: without a registry to ask, provenance is undecided, and
// without a verifier a signed-by rule denies (fail closed).
func TestNoRegistry(t *testing.T) {
	v := New(nil, nil, quiet).Pass(context.Background()).Judge(parse(t, denyLocal), pulled, t0)
	if v.Outcome != policy.Undecided || !errors.Is(v.Err, ErrNoRegistry) {
		t.Errorf("no registry: %s, %v", v.Outcome, v.Err)
	}
	var nilJudge *Judge
	if v := nilJudge.Pass(context.Background()).Judge(parse(t, denyLocal), pulled, t0); v.Outcome != policy.Undecided {
		t.Errorf("nil judge: %s", v.Outcome)
	}
}
