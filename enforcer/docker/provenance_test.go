package docker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

// TestProvenanceContainerdStore: on dockerd 29's containerd image store,
// where every name is listed with a repository digest, the guard asks the
// registry instead. Loaded content under an approved name goes (at the
// reconcile and on a load event), and so does a container made from it;
// pulled content stays, and so does a copy of it under another allowed name,
// even after a load took the name it was pulled under. While the registry
// cannot be reached nothing is removed for want of provenance: the name is
// reported failed, and the next reconcile removes it once the registry
// answers.
func TestProvenanceContainerdStore(t *testing.T) {
	app, copied, loaded := "reg.example/approved/app:1", "reg.example/approved/copy:2", "reg.example/approved/loaded:1"
	reg := enforcertest.NewRegistry([2]string{"reg.example/approved/app", id(1)})
	f := newFake()
	f.c8d = true
	f.addImage(id(1), app)    // pulled
	f.addImage(id(2), loaded) // loaded
	f.addContainer(Container{ID: cid(1), Image: loaded, ImageID: id(2), State: "exited"})
	h := startGuard(t, f, mustProvenancePolicy(t), withRegistry(reg))
	h.connected()

	if f.hasImage(id(2)) || f.hasContainer(cid(1)) {
		t.Errorf("the loaded content (names %q) or its container is still there", f.names(id(2)))
	}
	eq(t, "pulled content's names", f.names(id(1)), []string{app})
	h.wantRecords("removed reconcile "+loaded, "removed reconcile "+loaded+" ctr="+shortID(cid(1)))
	for _, r := range h.rec.Records() {
		if !strings.Contains(r.Decision.Reason, policy.ReasonLocalContent) {
			t.Errorf("reason %q, want %q", r.Decision.Reason, policy.ReasonLocalContent)
		}
	}
	if h.logs.LastEntry() != nil && strings.Contains(h.logs.LastEntry().Message, "names alone") {
		t.Errorf("the guard says it judges names alone: %q", h.logs.LastEntry().Message)
	}

	// Re-tagged to another allowed name, then a load takes the name it was
	// pulled under: the copy stays (the registry said where it came from).
	h.stream.send(t, f.tag(id(1), copied))
	h.settle()
	h.stream.send(t, f.load(actionLoad, id(3), app)...)
	h.settle()
	if f.hasImage(id(3)) {
		t.Errorf("the loaded content kept %q", f.names(id(3)))
	}
	eq(t, "pulled content's names", f.names(id(1)), []string{copied})

	// The registry goes away: a load under an approved name is kept and
	// reported failed, not removed.
	reg.SetDown(true)
	before := len(h.rec.Records())
	h.stream.send(t, f.load(actionLoad, id(4), loaded)...)
	h.settle()
	eq(t, "names while the registry is down", f.names(id(4)), []string{loaded})
	recs := h.rec.Records()[before:]
	if got := lines(recs); !slices.Contains(got, "failed load "+loaded+" err") && !slices.Contains(got, "failed tag "+loaded+" err") {
		t.Errorf("records %q, want a failed one for %s", got, loaded)
	}
	for _, r := range recs {
		if r.Action != "failed" {
			t.Errorf("record %q while the registry is down", line(r))
		}
	}
	eq(t, "pulled content's names", f.names(id(1)), []string{copied})

	// Back: the next reconcile removes it.
	reg.SetDown(false)
	h.g.RequestReconcile()
	h.waitReconcile()
	if f.hasImage(id(4)) {
		t.Errorf("the loaded content kept %q once the registry answered", f.names(id(4)))
	}
	eq(t, "pulled content's names", f.names(id(1)), []string{copied})
}

// TestProvenanceContainerdStoreScan: scan on the containerd image store
// says which repository the registry says the content came from, and lists
// a name whose provenance is unknown as failed.
func TestProvenanceContainerdStoreScan(t *testing.T) {
	reg := enforcertest.NewRegistry([2]string{"reg.example/approved/app", id(1)})
	f := newFake()
	f.c8d = true
	f.addImage(id(1), "reg.example/approved/app:1", "reg.example/evil/alias:1")
	f.addImage(id(2), "reg.example/approved/loaded:1")
	judge := evidence.New(nil, provenance.New(reg), logrus.New())
	got, err := Scan(context.Background(), f, mustProvenancePolicy(t), testNow, judge)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"reg.example/evil/alias:1": "reg.example/approved/app@" + id(1), "reg.example/approved/loaded:1": ""}
	if len(got) != len(want) {
		t.Errorf("findings %+v, want %d", got, len(want))
	}
	for _, fd := range got {
		if p, ok := want[fd.Reference]; !ok || fd.Provenance != p {
			t.Errorf("finding %s: provenance %q, want %q (listed: %v)", fd.Reference, fd.Provenance, p, ok)
		}
	}

	reg.SetDown(true)
	f.addImage(id(3), "reg.example/approved/late:1")
	got, err = Scan(context.Background(), f, mustProvenancePolicy(t), testNow, judge)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, fd := range got {
		if fd.Reference == "reg.example/approved/late:1" {
			found = fd.Action == "failed" && fd.Note != ""
		}
	}
	if !found {
		t.Errorf("findings %+v, want reg.example/approved/late:1 failed with a note", got)
	}
}

// TestProvenanceOwnStoreUnchanged: on dockerd's own image store the
// repository digests are dockerd's records of pulls: no registry is asked.
func TestProvenanceOwnStoreUnchanged(t *testing.T) {
	reg := enforcertest.NewRegistry()
	f := newFake()
	f.addImage(id(1), "reg.example/approved/app:1", "reg.example/approved/app@"+digestA)
	f.addImage(id(2), "reg.example/approved/loaded:1")
	h := startGuard(t, f, mustProvenancePolicy(t), withRegistry(reg))
	h.connected()
	h.wantRecords("removed reconcile reg.example/approved/loaded:1")
	if n := reg.Asks(); n != 0 {
		t.Errorf("the registry was asked %d times", n)
	}
}

// withRegistry has the guard ask reg where content came from, and log
// through the guard's logger.
func withRegistry(reg provenance.Registry) Option {
	return func(g *Guard) { g.judge = evidence.New(nil, provenance.New(reg), g.log) }
}

// withSignatures has the guard verify signatures with sigs.
func withSignatures(sigs enforcer.Signatures) Option {
	return func(g *Guard) { g.judge = evidence.New(sigs, nil, g.log) }
}

// noNetworkRegistry fails as a process without network sockets does (the
// shipped unit's RestrictAddressFamilies=AF_UNIX).
type noNetworkRegistry struct{}

func (noNetworkRegistry) HasManifest(ctx context.Context, repository, digest string) (bool, error) {
	return false, fmt.Errorf("dial tcp 127.0.0.1:5000: socket: %w", syscall.EAFNOSUPPORT)
}

// TestProvenanceContainerdStoreWithoutNetwork: a pullguard that may not use
// the network at all fails closed on dockerd's containerd image store: it
// cannot tell pulled from loaded content, so it removes neither for want of
// provenance and reports both failed (unlike the containerd guard, which
// judges names alone there: a CRI pull carries its own repo@digest record).
// A name the policy denies whatever its content still goes.
func TestProvenanceContainerdStoreWithoutNetwork(t *testing.T) {
	f := newFake()
	f.c8d = true
	f.addImage(id(1), "reg.example/approved/app:1")
	f.addImage(id(2), "reg.example/approved/loaded:1", "reg.example/evil/x:1")
	h := startGuard(t, f, mustProvenancePolicy(t), withRegistry(noNetworkRegistry{}))
	h.connected()
	eq(t, "pulled content's names", f.names(id(1)), []string{"reg.example/approved/app:1"})
	eq(t, "loaded content's names", f.names(id(2)), []string{"reg.example/approved/loaded:1"})
	h.wantRecords("failed reconcile reg.example/approved/app:1 err", "failed reconcile reg.example/approved/loaded:1 err",
		"untagged reconcile reg.example/evil/x:1")
	// The operator is told once why, and what to do, whatever the number of images.
	warned := 0
	for _, e := range h.logs.AllEntries() {
		if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "no network for pullguard") {
			warned++
			if !strings.Contains(e.Message, "pullguard(8), NETWORK") {
				t.Errorf("the warning does not say what to do: %s", e.Message)
			}
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings that pullguard has no network, want 1", warned)
	}
}
