package docker

import (
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

// TestUndecidedContentDoesNotRun (issue 24): on dockerd's containerd image
// store, while no registry answers where an image's content came from, the
// image is kept and reported failed, but a container made from it is
// removed like one of disallowed content, the reason saying why; it used to
// be kept without a word.
func TestUndecidedContentDoesNotRun(t *testing.T) {
	reg := enforcertest.NewRegistry()
	reg.SetDown(true)
	loaded := "reg.example/approved/loaded:1"
	f := newFake()
	f.c8d = true
	f.addImage(id(2), loaded)
	h := startGuard(t, f, mustProvenancePolicy(t), withRegistry(reg))
	h.connected()
	h.wantRecords("failed reconcile " + loaded + " err")

	h.stream.send(t, f.create(Container{ID: cid(1), Image: loaded, ImageID: id(2), State: "created"}))
	h.settle()
	if f.hasContainer(cid(1)) {
		t.Errorf("a container of content whose origin no registry answered for is still there")
	}
	if got := lines(h.rec.Records()); !slices.Contains(got, "removed create "+loaded+" ctr="+shortID(cid(1))) {
		t.Errorf("records %q, want the container removed", got)
	}
	for _, r := range h.rec.Records() {
		if r.ContainerID == "" && r.Action != enforcer.Failed {
			t.Errorf("record %q for the undecided image", line(r))
		}
		if r.ContainerID != "" && !strings.Contains(r.Decision.Reason, "could not be established") {
			t.Errorf("the container's record says %q, not that its content's origin could not be established", r.Decision.Reason)
		}
	}
	eq(t, "the undecided image's names", f.names(id(2)), []string{loaded})
}

// TestUndecidedGrace (issue 24): an image whose provenance stays undecided
// past the grace period is treated as not vouched for: removed, the reason
// saying since when no registry answered.
func TestUndecidedGrace(t *testing.T) {
	reg := enforcertest.NewRegistry()
	reg.SetDown(true)
	var elapsed atomic.Int64
	clock := func() time.Time { return testNow.Add(time.Duration(elapsed.Load())) }
	loaded := "reg.example/approved/ghost:1"
	f := newFake()
	f.c8d = true
	f.addImage(id(2), loaded)
	h := startGuard(t, f, mustProvenancePolicy(t), WithClock(clock), func(g *Guard) {
		g.judge = evidence.New(nil, provenance.New(reg).WithClock(clock), g.log).WithGrace(time.Minute)
	})
	h.connected()
	h.wantRecords("failed reconcile " + loaded + " err")

	elapsed.Store(int64(30 * time.Second))
	h.g.RequestReconcile()
	h.waitReconcile()
	eq(t, "names within the grace", f.names(id(2)), []string{loaded})

	elapsed.Store(int64(time.Minute))
	h.g.RequestReconcile()
	h.waitReconcile()
	if f.hasImage(id(2)) {
		t.Fatalf("the image kept %q past the grace", f.names(id(2)))
	}
	recs := h.rec.Records()
	last := recs[len(recs)-1]
	if last.Action != enforcer.Removed || !strings.Contains(last.Decision.Reason, "since "+testNow.UTC().Format(time.RFC3339)) {
		t.Errorf("last record %q (%s), want removed since %s", line(last), last.Decision.Reason, testNow.UTC().Format(time.RFC3339))
	}
}

// TestContainerdStoreMadeUpDigestDoesNotBlock: on dockerd's containerd
// image store every tag is listed with a digest name dockerd made up. A
// tag whose signature is missing goes, though its made-up digest name
// would be allowed once the content is vouched for: that name is no record
// of a pull, and goes with the tag.
func TestContainerdStoreMadeUpDigestDoesNotBlock(t *testing.T) {
	key, err := filepath.Abs("../../policy/testdata/keys/ed25519.pub")
	if err != nil {
		t.Fatal(err)
	}
	p := parsePolicy(t, "mode: enforce\nallow:\n  - image: reg.example/approved/**\n  - image: reg.example/signed/**\n    signed-by: [{key: "+key+"}]\n")
	reg := enforcertest.NewRegistry([2]string{"reg.example/approved/app", id(1)})
	sigs := enforcertest.NewSignatures(map[string]policy.SignatureStatus{id(1): policy.SignatureMissing})
	f := newFake()
	f.c8d = true
	f.addImage(id(1), "reg.example/approved/app:1", "reg.example/signed/local:1")
	h := startGuard(t, f, p, func(g *Guard) { g.judge = evidence.New(sigs, provenance.New(reg), g.log) })
	h.connected()
	eq(t, "names", f.names(id(1)), []string{"reg.example/approved/app:1"})
	h.wantRecords("untagged reconcile reg.example/signed/local:1")
}
