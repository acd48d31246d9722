package containerd

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"

	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

// withRegistry has the guard ask reg where content came from.
func withRegistry(reg provenance.Registry) Option {
	return WithEvidence(evidence.New(nil, provenance.New(reg), quietLog()))
}

func provenancePolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte("mode: enforce\nlocal-images: deny\n" + basePolicy)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProvenance: under local-images: deny a record under an allowed name
// stays only when the repository serves its target (a CRI repo@digest
// record proves nothing alone: `ctr images tag` writes any name), re-tagging it to another allowed name stays allowed,
// imported content under an allowed name goes, and while the registry
// cannot be reached nothing is deleted for want of provenance: it is
// reported failed and judged again at the next reconcile.
func TestProvenance(t *testing.T) {
	pulled, retag, imported, cri := "registry.local/approved/busybox:1.0", "registry.local/approved/copy:2",
		"registry.local/approved/busybox:imported", "registry.local/approved/cri:1"
	reg := enforcertest.NewRegistry([2]string{"registry.local/approved/busybox", dg('1')}, [2]string{"registry.local/approved/cri", dg('3')})
	f := newFake()
	f.addImage(k8s, pulled, dg('1'))
	f.addImage(k8s, retag, dg('1'))
	f.addImage(k8s, imported, dg('2')) // ctr import: the registry never served it
	// ctr images tag writes a digest name too: it vouches for nothing.
	forged := "registry.local/approved/busybox@" + dg('2')
	f.addImage(k8s, forged, dg('2'))
	f.addImage(k8s, cri, dg('3')) // CRI's records, asked about like any other
	f.addImage(k8s, "registry.local/approved/cri@"+dg('3'), dg('3'))
	reg.SetDown(false)
	g, rec := startGuard(t, f, enforcertest.NewPolicies(provenancePolicy(t)), withRegistry(reg))

	names := f.imageNames(k8s)
	for _, keep := range []string{pulled, retag, cri} {
		if !slices.Contains(names, keep) {
			t.Errorf("%s was deleted; records left %q", keep, names)
		}
	}
	if slices.Contains(names, imported) || slices.Contains(names, forged) {
		t.Errorf("%s (imported content) is still there: %q", imported, names)
	}
	for _, r := range rec.records() {
		if r.Decision.Input == "" || !slices.Contains([]string{imported, forged}, displayName(r.Decision.Input)) {
			t.Errorf("unexpected record %+v", r)
		}
	}
	asks := reg.Asks()

	// The registry goes away; content imported under an allowed name now is
	// not deleted (no definite answer) but reported failed.
	reg.SetDown(true)
	f.addImage(k8s, "registry.local/approved/late:1", dg('4'))
	g.RequestReconcile()
	eventually(t, "a failed record for the unproven name", func() bool {
		for _, r := range rec.records() {
			if r.Action == "failed" && r.Err != nil && displayName(r.Decision.Input) == "registry.local/approved/late:1" {
				return true
			}
		}
		return false
	})
	if !slices.Contains(f.imageNames(k8s), "registry.local/approved/late:1") {
		t.Errorf("deleted while the registry was unreachable")
	}
	// Answers are cached per (repository, digest): the reconcile asked only
	// about the new content.
	if n := reg.Asks() - asks; n != 1 {
		t.Errorf("the reconcile asked the registry %d times, want once (the new content only)", n)
	}

	// Back: the next reconcile deletes it.
	reg.SetDown(false)
	g.RequestReconcile()
	eventually(t, "the unproven record deleted once the registry answers", func() bool {
		return !slices.Contains(f.imageNames(k8s), "registry.local/approved/late:1")
	})
	for _, keep := range []string{pulled, retag, cri} {
		if !slices.Contains(f.imageNames(k8s), keep) {
			t.Errorf("%s was deleted", keep)
		}
	}
}

// noNetworkRegistry fails as a process without network sockets does.
type noNetworkRegistry struct{}

func (noNetworkRegistry) HasManifest(ctx context.Context, repository, digest string) (bool, error) {
	return false, fmt.Errorf("dial tcp 127.0.0.1:5000: socket: %w", syscall.EAFNOSUPPORT)
}

// TestProvenanceWithoutNetwork: a daemon that may not use the network at
// all cannot tell where content came from: an allowed name, and a container
// made from it, are undecided, kept and reported failed (the warning saying
// why is logged once, enforcer/evidence); a denied name is still removed.
func TestProvenanceWithoutNetwork(t *testing.T) {
	f := newFake()
	f.addImage(k8s, "registry.local/approved/busybox:1.0", dg('1'))
	f.addImage(k8s, "registry.local/evil/busybox:1.0", dg('2'))
	f.addContainer(k8s, Container{ID: "ctr", Image: "registry.local/approved/busybox:1.0"}, TaskCreated)
	_, rec := startGuard(t, f, enforcertest.NewPolicies(provenancePolicy(t)), withRegistry(noNetworkRegistry{}))
	if got := f.imageNames(k8s); !slices.Equal(got, []string{"registry.local/approved/busybox:1.0"}) {
		t.Errorf("records left %q", got)
	}
	if !f.hasContainer(k8s, "ctr") {
		t.Errorf("the container of undecided content was removed")
	}
	if got := rec.summary(); !slices.Equal(got, []string{"failed k8s.io ctr", "failed k8s.io registry.local/approved/busybox:1.0", "removed k8s.io registry.local/evil/busybox:1.0"}) {
		t.Errorf("records %q", got)
	}
}
