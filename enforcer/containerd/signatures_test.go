package containerd

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

// The guard judges each record's target digest: a signed image and the
// container made from it stay, an unsigned one goes, and nothing is
// deleted on an unverifiable answer until a resync gets a definite one.
func TestGuardJudgesSignatures(t *testing.T) {
	key, err := filepath.Abs("../../policy/testdata/keys/ed25519.pub")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(
		"mode: enforce\nlocal-images: allow\nallow:\n  - image: registry.local/approved/**\n    signed-by: [{key: " + key + "}]\n")})
	if err != nil {
		t.Fatal(err)
	}
	f := newFake()
	f.addImage(k8s, "registry.local/approved/app:signed", dg('1'))
	f.addImage(k8s, "registry.local/approved/app:unsigned", dg('2'))
	f.addImage(k8s, "registry.local/approved/app:unreachable", dg('3'))
	f.addContainer(k8s, Container{ID: "signed-ctr", Image: "registry.local/approved/app:signed"}, TaskRunning)
	f.addContainer(k8s, Container{ID: "unreachable-ctr", Image: "registry.local/approved/app:unreachable"}, TaskCreated)
	sigs := enforcertest.NewSignatures(map[string]policy.SignatureStatus{dg('1'): policy.SignatureVerified, dg('3'): policy.SignatureUnverifiable})
	_, rec := startGuard(t, f, enforcertest.NewPolicies(p), WithEvidence(evidence.New(sigs, nil, quietLog())))
	eventually(t, "the unsigned record deleted", func() bool {
		return !slices.Contains(f.imageNames(k8s), "registry.local/approved/app:unsigned")
	})
	settle()
	names := f.imageNames(k8s)
	if !slices.Contains(names, "registry.local/approved/app:signed") || !f.hasContainer(k8s, "signed-ctr") {
		t.Errorf("the signed image or its container went: records %q, container %v", names, f.hasContainer(k8s, "signed-ctr"))
	}
	if !slices.Contains(names, "registry.local/approved/app:unreachable") || !f.hasContainer(k8s, "unreachable-ctr") {
		t.Errorf("acted on an unverifiable answer: records %q, container %v", names, f.hasContainer(k8s, "unreachable-ctr"))
	}
	failed := 0
	for _, r := range rec.records() {
		sig := ""
		if r.Decision.Signature != nil {
			sig = r.Decision.Signature.Result.Field()
		}
		switch r.Action {
		case enforcer.Failed:
			failed++
			if sig != "unverifiable" || !errors.Is(r.Err, enforcer.ErrSignatureUnverifiable) {
				t.Errorf("failed record: signature %q, err %v", sig, r.Err)
			}
		case enforcer.Removed:
			if sig != "missing" || r.ImageID != dg('2') {
				t.Errorf("removed record: image %s, signature %q", r.ImageID, sig)
			}
		default:
			t.Errorf("unexpected record %v", rec.summary())
		}
	}
	if failed != 2 {
		t.Errorf("%d failed records, want the image and its container: %q", failed, rec.summary())
	}

	// The registry answers again, unsigned: the resync after a reconnect removes it.
	sigs.Set(dg('3'), policy.SignatureMissing)
	f.breakStream(errors.New("connection reset"))
	eventually(t, "the now unsigned record and its container deleted", func() bool {
		return !slices.Contains(f.imageNames(k8s), "registry.local/approved/app:unreachable") && !f.hasContainer(k8s, "unreachable-ctr")
	})
	if !slices.Contains(f.imageNames(k8s), "registry.local/approved/app:signed") || !f.hasContainer(k8s, "signed-ctr") {
		t.Errorf("the signed image or its container went: records %q", f.imageNames(k8s))
	}
}
