package containerd

// Regression tests for findings of a safety review.

import (
	"slices"
	"strings"
	"testing"

	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
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

// A container left running under running: keep by the reconcile is
// killed and deleted when its task is restarted (restart monitor, nerdctl
// --restart), unlike Docker's guard, which leaves kept containers' starts
// alone.
func TestRegressionKeptContainerRestarted(t *testing.T) {
	f := newFake()
	f.addContainer(k8s, Container{ID: "c1", Image: "registry.local/evil/miner:1.0"}, TaskRunning)
	_, rec := startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep)))
	// The task exits and is started again.
	f.addContainer(k8s, Container{ID: "c1", Image: "registry.local/evil/miner:1.0"}, TaskRunning)
	f.emit(Event{Namespace: k8s, Topic: TopicTaskStart, ContainerID: "c1"})
	settle()
	if !f.hasContainer(k8s, "c1") {
		t.Errorf("running: keep container deleted on restart; records %q", rec.summary())
	}
}

// Evidence overrules a decision that allows by name: every record of the
// content the registry does not serve goes, its image-ID record too; other
// content stays.
func TestEvidenceOverrulesAllowedNames(t *testing.T) {
	f := newFake()
	f.addImage(k8s, "registry.local/approved/app:1", dg('1'))
	f.addImage(k8s, "sha256:"+strings.Repeat("1", 64), dg('1'))
	f.addImage(k8s, "registry.local/approved/app:2", dg('2'))
	reg := enforcertest.NewRegistry([2]string{"registry.local/approved/app", dg('2')})
	_, rec := startGuard(t, f, enforcertest.NewPolicies(provenancePolicy(t)), withRegistry(reg))
	eventually(t, "the unserved content's records deleted", func() bool { return len(f.imageNames(k8s)) == 1 })
	if got := f.imageNames(k8s); got[0] != "registry.local/approved/app:2" {
		t.Errorf("records left %q", got)
	}
	for _, r := range rec.records() {
		if !strings.Contains(r.Decision.Reason, "did not come from an allowed repository") && !strings.Contains(r.Decision.Reason, "image ID") {
			t.Errorf("record %s %s: reason %q", r.Action, r.Image, r.Decision.Reason)
		}
	}
}
