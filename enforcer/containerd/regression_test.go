package containerd

// Regression tests for findings of a safety review.

import (
	"slices"
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
