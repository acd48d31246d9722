package containerd

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

// fakeOwner speaks for moby and plugins.moby as the daemon's Docker owner
// does: images and containers are its own as the test says.
type fakeOwner struct {
	mu         sync.Mutex
	images     map[string]Ownership // by namespace; unset: NotOwned
	containers map[string]Ownership // by ID; unset: NotOwned
	asked      []string             // containers asked about
}

func (o *fakeOwner) Speaks(ns string) bool { return ns == "moby" || ns == "plugins.moby" }

func (o *fakeOwner) Images(_ context.Context, ns string) Ownership {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.images[ns]
}

func (o *fakeOwner) Container(_ context.Context, ns, id, _ string, _ time.Time) Ownership {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.asked = append(o.asked, ns+" "+id)
	return o.containers[id]
}

func (o *fakeOwner) set(id string, own Ownership) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.containers[id] = own
}

// TestDockerNamespacesOwner: in Docker's namespaces the guard leaves to the
// owner what it owns, and judges the rest like any other object, by
// reconcile and by events; what cannot be told yet is looked at again.
func TestDockerNamespacesOwner(t *testing.T) {
	evil := "registry.local/evil/miner:1.0"
	good := "registry.local/approved/busybox:1.0"
	running := mustPolicy(t, policy.ModeEnforce, policy.RunningStop)

	t.Run("reconcile", func(t *testing.T) {
		f := newFake()
		f.addImage("moby", evil, dg('1'))
		f.addImage("plugins.moby", evil, dg('1'))
		f.addImage("default", good, dg('2'))
		f.addContainer("moby", Container{ID: "docker1", Image: evil}, TaskRunning)      // Docker's: its guard judges it
		f.addContainer("moby", Container{ID: "ctr1", Image: evil}, TaskRunning)         // another client's
		f.addContainer("plugins.moby", Container{ID: "plug1"}, TaskRunning)             // a Docker plugin
		f.addContainer("plugins.moby", Container{ID: "ctr2", Image: evil}, TaskRunning) // another client's
		o := &fakeOwner{images: map[string]Ownership{"moby": Owned},
			containers: map[string]Ownership{"docker1": Owned, "plug1": Owned}}
		_, rec := startGuard(t, f, enforcertest.NewPolicies(running), WithOwner(o))
		want := []string{"removed plugins.moby " + evil, "stopped moby ctr1", "stopped plugins.moby ctr2"}
		if got := rec.summary(); !slices.Equal(got, want) {
			t.Errorf("records %q, want %q", got, want)
		}
		if !f.hasContainer("moby", "docker1") || !f.hasContainer("plugins.moby", "plug1") {
			t.Error("Docker's own container or plugin was removed behind dockerd's back")
		}
		if got := f.imageNames("moby"); len(got) != 1 {
			t.Errorf("moby's records (Docker's images) = %q, want them left to the Docker guard", got)
		}
	})

	t.Run("events", func(t *testing.T) {
		f := newFake()
		o := &fakeOwner{images: map[string]Ownership{"moby": NotOwned}, containers: map[string]Ownership{"docker2": Owned}}
		_, rec := startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep)), WithOwner(o))
		// The containers are made from the record's content before the
		// record's event can have it deleted.
		f.addImage("moby", evil, dg('1')) // dockerd 20.10: moby's records are nobody's
		f.addContainer("moby", Container{ID: "docker2", Image: evil}, TaskRunning)
		f.addContainer("moby", Container{ID: "ctr3", Image: evil}, TaskRunning)
		f.emit(Event{Namespace: "moby", Topic: TopicImageCreate, Image: evil})
		f.emit(Event{Namespace: "moby", Topic: TopicTaskStart, ContainerID: "docker2"})
		f.emit(Event{Namespace: "moby", Topic: TopicTaskStart, ContainerID: "ctr3"})
		eventually(t, "ctr3 removed", func() bool { return !f.hasContainer("moby", "ctr3") })
		eventually(t, "the record removed", func() bool { return len(f.imageNames("moby")) == 0 })
		settle()
		if !f.hasContainer("moby", "docker2") {
			t.Error("Docker's own container was removed behind dockerd's back")
		}
		want := []string{"removed moby " + evil, "stopped moby ctr3"}
		if got := rec.summary(); !slices.Equal(got, want) {
			t.Errorf("records %q, want %q", got, want)
		}
	})

	t.Run("unknown is asked again", func(t *testing.T) {
		f := newFake()
		o := &fakeOwner{containers: map[string]Ownership{"squat": OwnerUnknown}}
		_, rec := startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep)), WithOwner(o))
		f.addImage("moby", evil, dg('1')) // the content the squat runs
		f.addContainer("moby", Container{ID: "squat", Image: evil}, TaskRunning)
		f.emit(Event{Namespace: "moby", Topic: TopicTaskStart, ContainerID: "squat"})
		settle()
		if !f.hasContainer("moby", "squat") || len(rec.summary()) > 0 {
			t.Fatalf("acted on a container whose owner could not be told: %q", rec.summary())
		}
		o.set("squat", NotOwned)
		eventually(t, "squat removed", func() bool { return !f.hasContainer("moby", "squat") })
		if got := rec.summary(); !slices.Equal(got, []string{"stopped moby squat"}) {
			t.Errorf("records %q", got)
		}
	})

	t.Run("other namespaces are not asked about", func(t *testing.T) {
		f := newFake()
		o := &fakeOwner{containers: map[string]Ownership{"c1": Owned}}
		startGuard(t, f, enforcertest.NewPolicies(mustPolicy(t, policy.ModeEnforce, policy.RunningKeep)), WithOwner(o))
		f.addImage(k8s, evil, dg('1'))
		f.addContainer(k8s, Container{ID: "c1", Image: evil}, TaskRunning)
		f.emit(Event{Namespace: k8s, Topic: TopicTaskStart, ContainerID: "c1"})
		eventually(t, "c1 removed", func() bool { return !f.hasContainer(k8s, "c1") })
		o.mu.Lock()
		defer o.mu.Unlock()
		if len(o.asked) > 0 {
			t.Errorf("asked about %q", o.asked)
		}
	})
}
