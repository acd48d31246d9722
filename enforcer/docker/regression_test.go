package docker

// Regression tests for findings of a safety review; each failed before its fix.

import (
	"fmt"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

func reviewPolicy(t *testing.T, src string) *policy.Policy {
	t.Helper()
	// Names alone: these fake images carry no digest.
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(src + "local-images: allow\n")})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// R1: a deny rule listing a manifest digest is never applied to an image
// Docker names by tag.
func TestRegressionDenyDigestIgnoredOnTaggedImage(t *testing.T) {
	p := reviewPolicy(t, fmt.Sprintf("mode: enforce\ndefault: deny\nallow:\n  - image: reg.example/app\ndeny:\n  - image: reg.example/app\n    digests: [\"%s\"]\n", digestB))
	if p.Decide("reg.example/app@"+digestB, testNow).Allowed {
		t.Fatal("policy should deny the digest")
	}
	f := newFake()
	h := startGuard(t, f, p)
	h.connected()
	h.stream.send(t, f.pull(id(1), "reg.example/app:v1", "reg.example/app@"+digestB))
	h.settle()
	if f.hasImage(id(1)) {
		t.Errorf("image whose manifest digest a deny rule lists is kept: names %q, records %q", f.names(id(1)), lines(h.rec.Records()))
		h.stream.send(t, f.create(Container{ID: cid(1), Image: "reg.example/app:v1", ImageID: id(1), State: "created"}))
		h.settle()
		if f.hasContainer(cid(1)) {
			t.Errorf("a container of it is kept too")
		}
	}
}

// R2: docker pull -a REPO emits one pull event whose actor is the bare
// repository; only REPO:latest is judged.
func TestRegressionPullAllTags(t *testing.T) {
	f := newFake()
	h := startGuard(t, f, testPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	h.connected()
	f.addImage(id(1), "reg.example/evil/x:1")
	f.addImage(id(2), "reg.example/evil/x:2")
	h.stream.send(t, Event{Type: typeImage, Action: actionPull, ID: "reg.example/evil/x",
		Attributes: map[string]string{"name": "reg.example/evil/x"}, Time: time.Now()})
	h.settle()
	if f.hasImage(id(1)) || f.hasImage(id(2)) {
		t.Errorf("pull -a of a denied repository: left %q %q; records %q", f.names(id(1)), f.names(id(2)), lines(h.rec.Records()))
	}
}

// R4: a reload (here: to allow-all) during a reconcile does not stop the
// reconcile; it acts under the old policy to the end.
func TestRegressionReloadDuringReconcile(t *testing.T) {
	allowAll := reviewPolicy(t, "mode: enforce\ndefault: allow\n")
	f := newFake()
	for i := 1; i <= 3; i++ {
		f.addImage(id(i), fmt.Sprintf("reg.example/team/x%d:1", i))
	}
	started := make(chan *harness, 1)
	f.beforeRemove = func(string) { // the operator reverts after the first removal
		h := <-started
		started <- h
		h.pol.Set(allowAll)
	}
	h := startGuard(t, f, testPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	started <- h
	h.connected()
	left := 0
	for i := 1; i <= 3; i++ {
		if f.hasImage(id(i)) {
			left++
		}
	}
	if left < 2 {
		t.Errorf("after the reload to allow-all the reconcile went on: %d of 3 left; records %q", left, lines(h.rec.Records()))
	}
}

// R5: allowed pinned content pulled by tag is reported as failed.
func TestRegressionPinnedDigestPulledByTag(t *testing.T) {
	f := newFake()
	h := startGuard(t, f, testPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	h.connected()
	h.stream.send(t, f.pull(id(1), "reg.example/pinned/app:v1", "reg.example/pinned/app@"+digestA))
	h.settle()
	for _, r := range h.rec.Records() {
		if r.Action == enforcer.Failed {
			t.Errorf("record for allowed pinned content: %s (%v)", line(r), r.Err)
		}
	}
}
