package containerd

// Regression tests for findings of a safety review.

import (
	"slices"
	"testing"

	"github.com/pullguard/pullguard/enforcer/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

// C1: a tags: allow rule allows a CRI pull by tag, but the repo@sha256
// record CRI makes for the same allowed content is deleted ("untagged").
func TestRegressionTagRuleDeletesCRIDigestRecordOfAllowedImage(t *testing.T) {
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(
		"mode: enforce\ndefault: deny\nallow:\n  - image: registry.local/team/app\n    tags: [\"v*\"]\n")})
	if err != nil {
		t.Fatal(err)
	}
	f := newFake()
	want := []string{"registry.local/team/app:v1", "registry.local/team/app@" + dg('1'), dg('c')}
	for _, n := range want {
		f.addImage(k8s, n, dg('1'))
	}
	_, rec := startGuard(t, f, enforcertest.NewPolicies(p))
	if got := f.imageNames(k8s); !slices.Equal(got, want) {
		t.Errorf("allowed CRI pull lost records:\n got %q\nwant %q\nrecords %q", got, want, rec.summary())
	}
}
