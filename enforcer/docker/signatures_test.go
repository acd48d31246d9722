package docker

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

func signedPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	key, err := filepath.Abs("../../policy/testdata/keys/ed25519.pub")
	if err != nil {
		t.Fatal(err)
	}
	return reviewPolicy(t, "mode: enforce\nallow:\n  - image: reg.example/approved/**\n    signed-by: [{key: "+key+"}]\n")
}

// The guard keeps a signed image and whatever runs from it, removes an
// unsigned one and one with no repository digest, and acts on nothing
// whose signature could not be verified until a definite answer arrives.
func TestGuardJudgesSignatures(t *testing.T) {
	const repo = "reg.example/approved/app"
	f := newFake()
	f.addImage(id(1), repo+":signed", repo+"@"+digestA)
	f.addImage(id(2), repo+":unsigned", repo+"@"+digestB)
	f.addImage(id(3), repo+":unreachable", repo+"@"+digestC)
	f.addImage(id(4), "reg.example/approved/built:1") // built or loaded: no repository digest
	f.addContainer(Container{ID: cid(1), Image: repo + ":signed", ImageID: id(1), State: "running"})
	f.addContainer(Container{ID: cid(3), Image: repo + ":unreachable", ImageID: id(3), State: "created"})
	sigs := enforcertest.NewSignatures(map[string]policy.SignatureStatus{
		digestA: policy.SignatureVerified, digestC: policy.SignatureUnverifiable})
	h := startGuard(t, f, signedPolicy(t), withSignatures(sigs))
	h.connected()
	h.settle()

	if names := f.names(id(1)); len(names) != 2 || !f.hasContainer(cid(1)) {
		t.Errorf("the signed image lost names (left %q) or its container (%v)", names, f.hasContainer(cid(1)))
	}
	if f.hasImage(id(2)) {
		t.Errorf("the unsigned image stays: %q", f.names(id(2)))
	}
	if f.hasImage(id(4)) {
		t.Errorf("the image without a repository digest stays: %q", f.names(id(4)))
	}
	if len(f.names(id(3))) != 2 || !f.hasContainer(cid(3)) {
		t.Errorf("acted on an unverifiable answer: names %q, container kept %v", f.names(id(3)), f.hasContainer(cid(3)))
	}
	var failed, noDigest int
	for _, r := range h.rec.Records() {
		sig := ""
		if r.Decision.Signature != nil {
			sig = r.Decision.Signature.Result.Field()
		}
		switch {
		case r.Action == enforcer.Failed:
			failed++
			if sig != "unverifiable" || !errors.Is(r.Err, enforcer.ErrSignatureUnverifiable) {
				t.Errorf("failed record: signature %q, err %v", sig, r.Err)
			}
		case r.ImageID == id(4):
			noDigest++
			if sig != "missing" || !strings.Contains(r.Decision.Reason, "no repository digest") {
				t.Errorf("record for the built image: signature %q, reason %q", sig, r.Decision.Reason)
			}
		case r.ImageID == id(2) && sig != "missing":
			t.Errorf("record for the unsigned image: signature %q", sig)
		case r.ImageID == id(1):
			t.Errorf("record about the signed image: %s", line(r))
		}
	}
	if failed != 2 || noDigest == 0 {
		t.Errorf("%d failed records (want the image and its container), %d for the built image; records %q", failed, noDigest, lines(h.rec.Records()))
	}

	// The registry answers again: unsigned after all, so the next resync removes it.
	sigs.Set(digestC, policy.SignatureMissing)
	if err := h.g.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.hasImage(id(3)) || f.hasContainer(cid(3)) {
		t.Errorf("the resync after a definite answer left names %q, container %v", f.names(id(3)), f.hasContainer(cid(3)))
	}
	if len(f.names(id(1))) != 2 {
		t.Errorf("the signed image lost names: %q", f.names(id(1)))
	}
}

// Without a signature verifier, a signed-by rule allows nothing (fail closed).
func TestGuardWithoutSignaturesFailsClosed(t *testing.T) {
	f := newFake()
	f.addImage(id(1), "reg.example/approved/app:1", "reg.example/approved/app@"+digestA)
	h := startGuard(t, f, signedPolicy(t))
	h.connected()
	h.settle()
	if f.hasImage(id(1)) {
		t.Errorf("an image a signed-by rule names stays without verification: %q", f.names(id(1)))
	}
}

// Provenance is still asked about an image that a signed-by rule allows
// because its signature verified: on dockerd's containerd image store,
// content no allowed repository serves goes, signed or not.
func TestGuardEvidenceAfterSignatures(t *testing.T) {
	f := newFake()
	f.c8d = true
	f.addImage(id(1), "reg.example/approved/app:1")
	sigs := enforcertest.NewSignatures(map[string]policy.SignatureStatus{id(1): policy.SignatureVerified})
	p := signedPolicy(t)
	p.LocalImages = policy.LocalImagesDeny
	judge := func(g *Guard) { g.judge = evidence.New(sigs, provenance.New(enforcertest.NewRegistry()), g.log) }
	h := startGuard(t, f, p, judge)
	h.connected()
	h.settle()
	if f.hasImage(id(1)) {
		t.Errorf("provenance was not asked about a signed image: it keeps %q", f.names(id(1)))
	}
}

// On dockerd's containerd image store, with the registry gone, neither the
// signature nor the provenance can be had: nothing is removed, and the
// failure says it is the signature.
func TestGuardSignatureUnanswered(t *testing.T) {
	f := newFake()
	f.c8d = true
	f.addImage(id(1), "reg.example/approved/app:1")
	sigs := enforcertest.NewSignatures(map[string]policy.SignatureStatus{id(1): policy.SignatureUnverifiable})
	reg := enforcertest.NewRegistry()
	reg.SetDown(true)
	p := signedPolicy(t)
	p.LocalImages = policy.LocalImagesDeny
	h := startGuard(t, f, p, func(g *Guard) { g.judge = evidence.New(sigs, provenance.New(reg), g.log) })
	h.connected()
	h.settle()
	if !f.hasImage(id(1)) {
		t.Fatalf("removed while nothing could be verified")
	}
	recs := h.rec.Records()
	if len(recs) == 0 || recs[0].Action != enforcer.Failed || !errors.Is(recs[0].Err, enforcer.ErrSignatureUnverifiable) {
		t.Errorf("records %+v, want one failed for the signature", recs)
	}
}

// scan lists what the guard would do: an unsigned image is removed, one
// whose signature could not be verified is failed, a signed one is not
// listed.
func TestScanSignatures(t *testing.T) {
	const repo = "reg.example/approved/app"
	f := newFake()
	f.addImage(id(1), repo+":signed", repo+"@"+digestA)
	f.addImage(id(2), repo+":unsigned", repo+"@"+digestB)
	f.addImage(id(3), repo+":unreachable", repo+"@"+digestC)
	sigs := enforcertest.NewSignatures(map[string]policy.SignatureStatus{
		digestA: policy.SignatureVerified, digestC: policy.SignatureUnverifiable})
	got, err := Scan(context.Background(), f, signedPolicy(t), testNow, evidence.New(sigs, nil, logrus.New()))
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, fd := range got {
		seen = append(seen, string(fd.Action)+" "+fd.Reference)
	}
	want := []string{"removed " + repo + ":unsigned", "failed " + repo + ":unreachable"}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}
