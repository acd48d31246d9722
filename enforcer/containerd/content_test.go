package containerd

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

const (
	evilRef = "registry.local/evil/miner:1.0"
	goodRef = "registry.local/approved/busybox:1.0"
)

func policyWith(t *testing.T, running policy.Running, local string) *policy.Policy {
	t.Helper()
	src := fmt.Sprintf("mode: enforce\nrunning: %s\nlocal-images: %s\n%s", running, local, basePolicy)
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// containerRecord is the record about container id, failing the test
// unless there is exactly one.
func containerRecord(t *testing.T, rec *recorder, id string) enforcer.Record {
	t.Helper()
	var got []enforcer.Record
	for _, r := range rec.records() {
		if r.ContainerID == id {
			got = append(got, r)
		}
	}
	if len(got) != 1 {
		t.Fatalf("records about %s: %+v, want one", id, got)
	}
	return got[0]
}

// A container made from content no allowed image has is stopped and
// removed, whatever its Image field or CRI label says.
func TestContainerJudgedByContent(t *testing.T) {
	cases := []struct {
		name      string
		container Container
		snapshot  *Snapshot // the container's snapshot; nil: none
		extra     []Snapshot
		records   map[string]string
		local     string
		want      string // "stopped", or "" for kept
		reason    string
	}{
		{
			name:      "allowed Image field, content pulled under a lease whose record is gone",
			container: Container{ID: "c1", Image: goodRef},
			snapshot:  &Snapshot{Parent: fakeChain(dg('9'))},
			want:      "stopped",
			reason:    "is the content of no image in namespace k8s.io; the container names " + goodRef + ", which proves nothing",
		},
		{
			name:      "empty Image, CRI label names an allowed image, content of a denied record",
			container: Container{ID: "c1", Labels: map[string]string{criImageName: goodRef}},
			snapshot:  &Snapshot{Parent: fakeChain(dg('1'))},
			records:   map[string]string{evilRef: dg('1')},
			want:      "stopped",
			reason:    "no allow rule matches",
		},
		{
			name:      "Image field names disallowed content, snapshot of the allowed image: kept",
			container: Container{ID: "c1", Image: evilRef},
			snapshot:  &Snapshot{Parent: fakeChain(dg('2'))},
			records:   map[string]string{evilRef: dg('1')},
		},
		{
			name:      "content that several images have: one allowed image allows it",
			container: Container{ID: "c1", Image: evilRef},
			snapshot:  &Snapshot{Parent: fakeChain(dg('1'))},
			records:   map[string]string{evilRef: dg('1'), "registry.local/approved/same:1": dg('1')},
		},
		{
			name:      "snapshot prepared from nothing",
			container: Container{ID: "c1", Image: goodRef},
			snapshot:  &Snapshot{},
			want:      "stopped",
			reason:    "was prepared from nothing",
		},
		{
			name:      "snapshot that does not exist",
			container: Container{ID: "c1", Image: goodRef, Snapshotter: fakeSnapshotter, SnapshotKey: "gone"},
			want:      "stopped",
			reason:    "snapshot gone (overlayfs) does not exist",
		},
		{
			name:      "host directory as rootfs (ctr run --rootfs), local-images: deny",
			container: Container{ID: "c1"},
			local:     "deny",
			want:      "stopped",
			reason:    "is a directory of the host, not an image",
		},
		{
			name:      "Docker's containers: no snapshot named, one keyed by the ID over <ID>-init, of denied content",
			container: Container{ID: "c1", Image: "registry.local/approved/unpulled:1"},
			extra: []Snapshot{{Name: "c1", Parent: "c1-init"},
				{Name: "c1-init", Parent: fakeChain(dg('1')), Committed: true}},
			records: map[string]string{evilRef: dg('1')},
			want:    "stopped",
			reason:  "no allow rule matches",
		},
		{
			name:      "Docker's containers: of allowed content, kept",
			container: Container{ID: "c1", Image: "registry.local/evil/unpulled:1"},
			extra: []Snapshot{{Name: "c1", Parent: "c1-init"},
				{Name: "c1-init", Parent: fakeChain(dg('2')), Committed: true}},
			local: "allow",
		},
		{
			name:      "host directory as rootfs, local-images: allow: left alone",
			container: Container{ID: "c1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			local := tc.local
			if local == "" {
				local = "allow"
			}
			f := newFake()
			_, rec := startGuard(t, f, enforcertest.NewPolicies(policyWith(t, policy.RunningKeep, local)))
			f.addImage(k8s, goodRef, dg('2'))
			for name, target := range tc.records {
				f.addImage(k8s, name, target)
			}
			for _, sn := range tc.extra {
				f.addSnapshot(k8s, sn)
			}
			c := tc.container
			if tc.snapshot != nil {
				s := *tc.snapshot
				s.Name = "c1-rootfs"
				f.addSnapshot(k8s, s)
				c.Snapshotter, c.SnapshotKey = fakeSnapshotter, s.Name
			}
			f.addContainer(k8s, c, TaskRunning)
			f.emit(Event{Namespace: k8s, Topic: TopicTaskStart, ContainerID: "c1"})
			if tc.want == "" {
				settle()
				if !f.hasContainer(k8s, "c1") {
					t.Fatal("container removed, want it kept")
				}
				for _, r := range rec.records() {
					if r.ContainerID == "c1" {
						t.Errorf("record %+v, want none", r)
					}
				}
				return
			}
			eventually(t, "container removed", func() bool { return !f.hasContainer(k8s, "c1") })
			eventually(t, "record", func() bool { return len(rec.records()) > 0 })
			settle()
			r := containerRecord(t, rec, "c1")
			if string(r.Action) != tc.want || !strings.Contains(r.Decision.Reason, tc.reason) {
				t.Errorf("record: action %s reason %q, want %s and a reason containing %q", r.Action, r.Decision.Reason, tc.want, tc.reason)
			}
			if got := f.callLog(); !slices.Contains(got, "kill k8s.io c1") || !slices.Contains(got, "delete-task k8s.io c1") {
				t.Errorf("actions %q: the task was not killed and deleted", got)
			}
		})
	}
}

// running: keep protects a container that was running before pullguard
// started, not one that started from disallowed content while it ran and
// was found only by a reconcile (its events lost).
func TestRunningKeepProtectsOnlyWhatRanBefore(t *testing.T) {
	f := newFake()
	f.addImage(k8s, evilRef, dg('1'))
	f.addContainer(k8s, Container{ID: "before", Image: evilRef}, TaskRunning)
	f.mu.Lock()
	delete(f.ns[k8s].images, evilRef) // the record goes; the snapshot stays
	f.mu.Unlock()
	g, rec := startGuard(t, f, enforcertest.NewPolicies(policyWith(t, policy.RunningKeep, "allow")))
	if got := containerRecord(t, rec, "before"); got.Action != enforcer.Reported {
		t.Errorf("container running before pullguard: %s, want reported", got.Action)
	}

	f.addSnapshot(k8s, Snapshot{Name: "late-rootfs", Parent: fakeChain(dg('1'))})
	f.addContainer(k8s, Container{ID: "late", Image: goodRef, Snapshotter: fakeSnapshotter, SnapshotKey: "late-rootfs",
		Created: time.Now()}, TaskRunning)
	g.RequestReconcile()
	eventually(t, "late container removed", func() bool { return !f.hasContainer(k8s, "late") })
	if got := containerRecord(t, rec, "late"); got.Action != enforcer.Stopped {
		t.Errorf("container started while pullguard ran: %s, want stopped", got.Action)
	}
	if !f.hasContainer(k8s, "before") {
		t.Error("the container running before pullguard was removed under running: keep")
	}
}

// A container pullguard saw allowed stays allowed when its image's records
// are deleted while it runs (ctr images rm), even under running: stop.
func TestContainerOutlivesItsRecords(t *testing.T) {
	f := newFake()
	f.addImage(k8s, goodRef, dg('2'))
	f.addContainer(k8s, Container{ID: "c1", Image: goodRef, Created: time.Now().Add(time.Hour)}, TaskRunning)
	g, rec := startGuard(t, f, enforcertest.NewPolicies(policyWith(t, policy.RunningStop, "allow")))
	f.mu.Lock()
	delete(f.ns[k8s].images, goodRef)
	f.mu.Unlock()
	g.RequestReconcile()
	g.RequestReconcile()
	settle()
	if !f.hasContainer(k8s, "c1") {
		t.Fatal("the container was removed once its image's record was deleted")
	}
	if recs := rec.records(); len(recs) != 0 {
		t.Errorf("records %+v, want none", recs)
	}
}

// A task created while the guard deletes its container (it was not there
// when the guard looked, and is there once the container is gone) is
// killed and deleted too: no task, runc init or shim outlives the
// container.
func TestRemovalEndsATaskCreatedMeanwhile(t *testing.T) {
	for _, when := range []string{"before the container is deleted", "after the container is deleted"} {
		t.Run(when, func(t *testing.T) {
			f := newFake()
			f.addImage(k8s, evilRef, dg('1'))
			_, _ = startGuard(t, f, enforcertest.NewPolicies(policyWith(t, policy.RunningKeep, "allow")))
			f.addImage(k8s, evilRef, dg('1'))
			f.addContainer(k8s, Container{ID: "c1", Image: evilRef}, "")
			f.mu.Lock()
			f.beforeDeleteContainer = func(n *fakeNS) {
				if when == "before the container is deleted" {
					n.tasks["c1"] = TaskCreated // registered between the look and the delete
				}
			}
			f.afterDeleteContainer = func(n *fakeNS) {
				if when == "after the container is deleted" {
					n.tasks["c1"] = TaskCreated // its creation finishes now
				}
			}
			f.mu.Unlock()
			f.emit(Event{Namespace: k8s, Topic: TopicContainerCreate, ContainerID: "c1"})
			eventually(t, "container and task gone", func() bool {
				f.mu.Lock()
				defer f.mu.Unlock()
				_, task := f.ns[k8s].tasks["c1"]
				_, ctr := f.ns[k8s].containers["c1"]
				return !task && !ctr
			})
		})
	}
}

// A task whose container is gone is ended at its task event and at a
// reconcile.
func TestOrphanTasksReaped(t *testing.T) {
	f := newFake()
	f.addContainer(k8s, Container{ID: "kept"}, TaskRunning) // a container of its own: untouched
	f.mu.Lock()
	f.namespace(k8s).tasks["orphan1"] = TaskRunning
	f.mu.Unlock()
	_, _ = startGuard(t, f, enforcertest.NewPolicies(policyWith(t, policy.RunningKeep, "allow")))
	f.mu.Lock()
	f.ns[k8s].tasks["orphan2"] = TaskCreated
	f.mu.Unlock()
	f.emit(Event{Namespace: k8s, Topic: TopicTaskCreate, ContainerID: "orphan2"})
	eventually(t, "orphans ended", func() bool {
		s, err := f.TaskStatus(t.Context(), k8s, "orphan2")
		_, err1 := f.TaskStatus(t.Context(), k8s, "orphan1")
		return s == "" && errdefs.IsNotFound(err) && errdefs.IsNotFound(err1)
	})
	if s, err := f.TaskStatus(t.Context(), k8s, "kept"); err != nil || s != TaskRunning {
		t.Errorf("the task of an existing container: %q %v, want running", s, err)
	}
}

// Two images with the same layers (a pause image and busybox built from one
// rootfs): a container created from the denied one, by a name that is a
// record of that content, runs the denied image; one that names neither
// runs content an allowed image has.
func TestSameLayersTheTypedNameDecides(t *testing.T) {
	for _, tc := range []struct {
		claim string
		want  bool // removed
	}{{evilRef, true}, {"", false}, {"registry.local/approved/unknown:1", false}} {
		t.Run("claim "+tc.claim, func(t *testing.T) {
			f := newFake()
			f.layers = map[string]string{dg('1'): dg('2')}
			_, rec := startGuard(t, f, enforcertest.NewPolicies(policyWith(t, policy.RunningKeep, "allow")))
			f.addImage(k8s, goodRef, dg('2'))
			f.addImage(k8s, evilRef, dg('1'))
			f.addSnapshot(k8s, Snapshot{Name: "c1-rootfs", Parent: fakeChain(dg('2'))})
			f.addContainer(k8s, Container{ID: "c1", Labels: map[string]string{criImageName: tc.claim},
				Snapshotter: fakeSnapshotter, SnapshotKey: "c1-rootfs"}, TaskRunning)
			f.emit(Event{Namespace: k8s, Topic: TopicTaskStart, ContainerID: "c1"})
			if tc.want {
				eventually(t, "container removed", func() bool { return !f.hasContainer(k8s, "c1") })
				eventually(t, "record", func() bool { return len(rec.records()) > 0 })
				if r := containerRecord(t, rec, "c1"); r.Decision.Reference != evilRef {
					t.Errorf("record names %q, want %s", r.Decision.Reference, evilRef)
				}
				return
			}
			settle()
			if !f.hasContainer(k8s, "c1") {
				t.Error("container removed, want it kept")
			}
		})
	}
}
