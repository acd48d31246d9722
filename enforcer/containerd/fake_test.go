package containerd

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/containerd/errdefs"
)

// fakeAPI is an in-memory containerd: namespaces of image records,
// containers and tasks, and an event stream the test drives.
type fakeAPI struct {
	mu    sync.Mutex
	ns    map[string]*fakeNS
	down  bool     // every call fails as if containerd were not running
	calls []string // actions taken, in order: "delete-image ns name", "kill ns id", ...
	sub   *fakeSub
	// topics are those of the last Subscribe.
	topics []string
	// subscribed receives a value on every Subscribe.
	subscribed chan struct{}
	// beforeDelete, when set, runs before an image record is deleted,
	// without the fake's lock held.
	beforeDelete func(ns, name string)
	// beforeDeleteContainer and afterDeleteContainer, when set, run once
	// around a container's deletion, with the fake's lock held.
	beforeDeleteContainer, afterDeleteContainer func(n *fakeNS)
	// layers maps a target to the target whose layers it has (same
	// rootfs, another config); others have layers of their own.
	layers map[string]string
}

type fakeNS struct {
	images     map[string]string // name -> target digest
	containers map[string]Container
	tasks      map[string]TaskStatus
	snapshots  map[string]Snapshot // key -> snapshot, of snapshotter fakeSnapshotter
}

// fakeSnapshotter is the snapshotter of the fake's containers.
const fakeSnapshotter = "overlayfs"

// fakeChain is the chain ID of the layers of the image whose manifest is
// target, in the fake.
func fakeChain(target string) string { return "chain-" + target }

type fakeSub struct {
	ctx    context.Context
	events chan Event
	errs   chan error
}

var _ API = (*fakeAPI)(nil)

func newFake() *fakeAPI {
	return &fakeAPI{ns: map[string]*fakeNS{}, subscribed: make(chan struct{}, 100)}
}

var errDown = fmt.Errorf("connection refused: %w", errdefs.ErrUnavailable)

func (f *fakeAPI) namespace(ns string) *fakeNS {
	n := f.ns[ns]
	if n == nil {
		n = &fakeNS{images: map[string]string{}, containers: map[string]Container{}, tasks: map[string]TaskStatus{},
			snapshots: map[string]Snapshot{}}
		f.ns[ns] = n
	}
	return n
}

// Test-side setters.

func (f *fakeAPI) addImage(ns, name, target string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.namespace(ns).images[name] = target
}

// addContainer adds a container made, as containerd's clients make it,
// from the image it names (claimed): its snapshot is prepared from that
// record's content. A container naming no record has no snapshot (ctr
// run --rootfs) unless the test gave it one.
func (f *fakeAPI) addContainer(ns string, c Container, task TaskStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.namespace(ns)
	if c.SnapshotKey == "" {
		if target, ok := n.images[claimed(c)]; ok {
			c.Snapshotter, c.SnapshotKey = fakeSnapshotter, c.ID+"-rootfs"
			n.snapshots[c.SnapshotKey] = Snapshot{Name: c.SnapshotKey, Parent: fakeChain(target)}
		}
	}
	n.containers[c.ID] = c
	if task != "" {
		n.tasks[c.ID] = task
	}
}

// addSnapshot adds a snapshot of fakeSnapshotter.
func (f *fakeAPI) addSnapshot(ns string, s Snapshot) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.namespace(ns).snapshots[s.Name] = s
}

func (f *fakeAPI) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// emit sends an event on the current subscription; false if there is none.
func (f *fakeAPI) emit(ev Event) bool {
	f.mu.Lock()
	s := f.sub
	f.mu.Unlock()
	if s == nil {
		return false
	}
	select {
	case s.events <- ev:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// breakStream ends the current subscription with err, as a containerd
// restart does.
func (f *fakeAPI) breakStream(err error) {
	f.mu.Lock()
	s := f.sub
	f.sub = nil
	f.mu.Unlock()
	if s != nil {
		s.errs <- err
	}
}

func (f *fakeAPI) imageNames(ns string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	if n := f.ns[ns]; n != nil {
		for name := range n.images {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func (f *fakeAPI) hasContainer(ns, id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.ns[ns]
	if n == nil {
		return false
	}
	_, ok := n.containers[id]
	return ok
}

func (f *fakeAPI) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// API.

func (f *fakeAPI) check() error {
	if f.down {
		return errDown
	}
	return nil
}

func (f *fakeAPI) Namespaces(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	var out []string
	for ns := range f.ns {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeAPI) images(ns string, keep func(target string) bool) ([]Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	n := f.ns[ns]
	if n == nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, errdefs.ErrNotFound)
	}
	var out []Image
	for name, target := range n.images {
		if keep(target) {
			out = append(out, Image{Name: name, Target: target})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeAPI) Images(_ context.Context, ns string) ([]Image, error) {
	return f.images(ns, func(string) bool { return true })
}

func (f *fakeAPI) ImagesByTarget(_ context.Context, ns, digest string) ([]Image, error) {
	return f.images(ns, func(t string) bool { return t == digest })
}

func (f *fakeAPI) Image(_ context.Context, ns, name string) (Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return Image{}, err
	}
	if n := f.ns[ns]; n != nil {
		if t, ok := n.images[name]; ok {
			return Image{Name: name, Target: t}, nil
		}
	}
	return Image{}, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
}

func (f *fakeAPI) DeleteImage(_ context.Context, ns, name string) error {
	if hook := f.beforeDelete; hook != nil {
		hook(ns, name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	n := f.ns[ns]
	if n == nil {
		return errdefs.ErrNotFound
	}
	if _, ok := n.images[name]; !ok {
		return fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	delete(n.images, name)
	f.calls = append(f.calls, "delete-image "+ns+" "+name)
	return nil
}

func (f *fakeAPI) Containers(_ context.Context, ns string) ([]Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	n := f.ns[ns]
	if n == nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, errdefs.ErrNotFound)
	}
	var out []Container
	for _, c := range n.containers {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *fakeAPI) Container(_ context.Context, ns, id string) (Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return Container{}, err
	}
	if n := f.ns[ns]; n != nil {
		if c, ok := n.containers[id]; ok {
			return c, nil
		}
	}
	return Container{}, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
}

func (f *fakeAPI) TaskStatus(_ context.Context, ns, id string) (TaskStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return "", err
	}
	if n := f.ns[ns]; n != nil {
		if _, ok := n.containers[id]; !ok { // as containerd: through the container
			return "", fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
		}
		if s, ok := n.tasks[id]; ok {
			return s, nil
		}
	}
	return "", fmt.Errorf("task %q: %w", id, errdefs.ErrNotFound)
}

func (f *fakeAPI) KillTask(_ context.Context, ns, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	n := f.ns[ns]
	if n == nil {
		return errdefs.ErrNotFound
	}
	if _, ok := n.containers[id]; !ok {
		return fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	if _, ok := n.tasks[id]; !ok {
		return fmt.Errorf("task %q: %w", id, errdefs.ErrNotFound)
	}
	n.tasks[id] = TaskStopped
	f.calls = append(f.calls, "kill "+ns+" "+id)
	return nil
}

func (f *fakeAPI) DeleteTask(_ context.Context, ns, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	n := f.ns[ns]
	if n == nil {
		return errdefs.ErrNotFound
	}
	if _, ok := n.containers[id]; !ok {
		return fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	s, ok := n.tasks[id]
	if !ok {
		return fmt.Errorf("task %q: %w", id, errdefs.ErrNotFound)
	}
	if s != TaskStopped && s != TaskCreated {
		return fmt.Errorf("task must be stopped before deletion: %s: %w", s, errdefs.ErrFailedPrecondition)
	}
	delete(n.tasks, id)
	f.calls = append(f.calls, "delete-task "+ns+" "+id)
	return nil
}

func (f *fakeAPI) DeleteContainer(_ context.Context, ns, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	n := f.ns[ns]
	if n == nil {
		return errdefs.ErrNotFound
	}
	if _, ok := n.containers[id]; !ok {
		return fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	if hook := f.beforeDeleteContainer; hook != nil {
		f.beforeDeleteContainer = nil
		hook(n)
	}
	if _, ok := n.tasks[id]; ok {
		return fmt.Errorf("cannot delete running task %v: %w", id, errdefs.ErrFailedPrecondition)
	}
	delete(n.containers, id)
	f.calls = append(f.calls, "delete-container "+ns+" "+id)
	if hook := f.afterDeleteContainer; hook != nil {
		f.afterDeleteContainer = nil
		hook(n)
	}
	return nil
}

func (f *fakeAPI) Tasks(_ context.Context, ns string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	n := f.ns[ns]
	if n == nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, errdefs.ErrNotFound)
	}
	var out []string
	for id := range n.tasks {
		out = append(out, id)
	}
	sort.Strings(out)
	return out, nil
}

func (f *fakeAPI) ReapTask(_ context.Context, ns, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	n := f.ns[ns]
	if n == nil {
		return errdefs.ErrNotFound
	}
	if _, ok := n.containers[id]; ok {
		return fmt.Errorf("container %q: %w", id, errdefs.ErrAlreadyExists)
	}
	if _, ok := n.tasks[id]; !ok {
		return fmt.Errorf("task %q: %w", id, errdefs.ErrNotFound)
	}
	delete(n.tasks, id)
	f.calls = append(f.calls, "reap "+ns+" "+id)
	return nil
}

func (f *fakeAPI) ChainIDs(_ context.Context, ns, target string) ([]string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, false, err
	}
	if same, ok := f.layers[target]; ok {
		target = same
	}
	return []string{fakeChain(target)}, true, nil
}

func (f *fakeAPI) Snapshot(_ context.Context, ns, snapshotter, key string) (Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return Snapshot{}, err
	}
	if n := f.ns[ns]; n != nil && snapshotter == fakeSnapshotter {
		if s, ok := n.snapshots[key]; ok {
			return s, nil
		}
	}
	return Snapshot{}, fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
}

func (f *fakeAPI) Snapshots(_ context.Context, ns, snapshotter string) ([]Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	var out []Snapshot
	if n := f.ns[ns]; n != nil && snapshotter == fakeSnapshotter {
		for _, s := range n.snapshots {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeAPI) Subscribe(ctx context.Context, topics ...string) (<-chan Event, <-chan error) {
	s := &fakeSub{ctx: ctx, events: make(chan Event), errs: make(chan error, 1)}
	f.mu.Lock()
	f.topics = topics
	if f.down {
		s.errs <- errDown
	} else {
		f.sub = s
	}
	f.mu.Unlock()
	f.subscribed <- struct{}{}
	return s.events, s.errs
}

func (f *fakeAPI) Close() error { return nil }
