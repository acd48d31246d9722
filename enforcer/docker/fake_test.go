package docker

import (
	"context"
	"errors"
	"fmt"
	"github.com/pullguard/pullguard/policy"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDocker is an in-memory dockerd behind the API interface. Its image
// removal follows dockerd 20.10's rules (daemon/images/image_delete.go):
// removing a name only untags an image that has other names; removing a
// repository's last tag also drops that repository's digest references;
// the last name goes with the image; and an image whose only reference
// (one tag plus its repository's digests) is in use by a container cannot
// lose it without force.
type fakeDocker struct {
	mu         sync.Mutex
	images     map[string]*fakeImage // by full ID
	imageOrder []string
	ctrs       map[string]*Container
	ctrOrder   []string
	plugins    []Plugin // plugins_test.go

	// mutations records every call that changes something: "rmi NAME",
	// "stop ID", "rm ID".
	mutations []string
	// fail injects an error for a call key ("rmi NAME", "rm ID", "stop ID",
	// "inspect-image REF", "list-images").
	fail map[string]error
	// beforeRemove, when set, runs (without the lock) before each image
	// name removal.
	beforeRemove func(name string)
	// listGate, when set, is waited on by ListImages before it answers.
	listGate   chan struct{}
	down       bool // Ping fails
	pings      int
	listImages int
	// inspectsByID counts InspectImage calls by full image ID: a guard's
	// passes over an image.
	inspectsByID int
	// resolves counts ImageIDOf calls.
	resolves int
	sinces   []time.Time
	subs     chan *fakeStream
	// c8d makes it dockerd 29's containerd image store: images are listed
	// with a repository digest made from every tag and the image ID
	// (provenance_test.go).
	c8d bool
	// untags are the untag events dockerd keeps, one per name removed.
	untags []keptUntag
}

// keptUntag is an untag event as dockerd keeps it for GET /events.
type keptUntag struct {
	name, id string
	at       time.Time
}

type fakeImage struct {
	id      string
	tags    []string
	digests []string
}

type fakeStream struct {
	events chan Event
	errs   chan error
	ctx    context.Context
}

var _ API = (*fakeDocker)(nil)

func newFake() *fakeDocker {
	return &fakeDocker{
		images: map[string]*fakeImage{},
		ctrs:   map[string]*Container{},
		fail:   map[string]error{},
		subs:   make(chan *fakeStream, 16),
	}
}

// id makes a full image ID from a small number.
func id(n int) string { return fmt.Sprintf("sha256:%064x", n) }

// cid makes a container ID.
func cid(n int) string { return fmt.Sprintf("%064x", 0xc0000+n) }

// norms memoizes normalize for the fake, whose lookups scan every name.
var norms sync.Map

func fakeNorm(s string) string {
	if v, ok := norms.Load(s); ok {
		return v.(string)
	}
	n := normalize(s)
	norms.Store(s, n)
	return n
}

func isDigestName(s string) bool { return strings.Contains(s, "@") }

var repos sync.Map

func repoOfName(s string) string {
	if v, ok := repos.Load(s); ok {
		return v.(string)
	}
	r := s
	if ref, err := policy.ParseRef(s); err == nil {
		r = ref.Name
	}
	repos.Store(s, r)
	return r
}

// addImage creates an image with names (digest references contain "@").
// A name already on another image moves, as with docker tag.
func (f *fakeDocker) addImage(imageID string, names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.images[imageID] == nil {
		f.images[imageID] = &fakeImage{id: imageID}
		f.imageOrder = append(f.imageOrder, imageID)
	}
	for _, n := range names {
		f.putNameLocked(imageID, n)
	}
}

func (f *fakeDocker) putNameLocked(imageID, name string) {
	norm := fakeNorm(name)
	for _, img := range f.images {
		img.tags = slices.DeleteFunc(img.tags, func(s string) bool { return fakeNorm(s) == norm })
		img.digests = slices.DeleteFunc(img.digests, func(s string) bool { return fakeNorm(s) == norm })
	}
	img := f.images[imageID]
	if isDigestName(name) {
		img.digests = append(img.digests, name)
	} else {
		img.tags = append(img.tags, name)
	}
}

func (f *fakeDocker) addContainer(c Container) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cc := c
	f.ctrs[c.ID] = &cc
	f.ctrOrder = append(f.ctrOrder, c.ID)
}

// The event makers change the state first, as dockerd does, then return
// the event dockerd emits.

func (f *fakeDocker) pull(imageID, tag, digest string) Event {
	names := []string{tag}
	if digest != "" {
		names = append(names, digest)
	}
	f.addImage(imageID, names...)
	return Event{Type: typeImage, Action: actionPull, ID: tag, Attributes: map[string]string{"name": tag}, Time: time.Now()}
}

func (f *fakeDocker) pullByDigest(imageID, digestRef string) Event {
	f.addImage(imageID, digestRef)
	return Event{Type: typeImage, Action: actionPull, ID: digestRef, Time: time.Now()}
}

func (f *fakeDocker) tag(imageID, name string) Event {
	f.addImage(imageID, name)
	return Event{Type: typeImage, Action: actionTag, ID: imageID, Attributes: map[string]string{"name": name}, Time: time.Now()}
}

// load and import emit a tag event per name, then one with the ID.
func (f *fakeDocker) load(action, imageID string, names ...string) []Event {
	var evs []Event
	for _, n := range names {
		evs = append(evs, f.tag(imageID, n))
	}
	return append(evs, Event{Type: typeImage, Action: action, ID: imageID, Time: time.Now()})
}

func (f *fakeDocker) create(c Container) Event {
	f.addContainer(c)
	return Event{Type: typeContainer, Action: actionCreate, ID: c.ID,
		Attributes: map[string]string{"image": c.Image}, Time: time.Now()}
}

func containerEvent(action, id string) Event {
	return Event{Type: typeContainer, Action: action, ID: id, Time: time.Now()}
}

// names returns an image's names sorted, or nil when the image is gone.
func (f *fakeDocker) names(imageID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	img := f.images[imageID]
	if img == nil {
		return nil
	}
	out := append(append([]string{}, img.tags...), img.digests...)
	sort.Strings(out)
	return out
}

func (f *fakeDocker) hasImage(imageID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.images[imageID] != nil
}

func (f *fakeDocker) hasContainer(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctrs[id] != nil
}

func (f *fakeDocker) mutationsSoFar() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.mutations...)
}

func (f *fakeDocker) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakeDocker) setFail(key string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[key] = err
}

func (f *fakeDocker) failure(key string) error {
	if err := f.fail[key]; err != nil {
		return fmt.Errorf("fake %s: %w", key, err)
	}
	return nil
}

// stream waits for the guard's next subscription.
func (f *fakeDocker) stream(t testing.TB) *fakeStream {
	t.Helper()
	select {
	case s := <-f.subs:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("the guard did not subscribe to events")
		return nil
	}
}

// send delivers events in order; it fails the test if the guard does not
// take one within a few seconds (its reader must never block).
func (s *fakeStream) send(t testing.TB, evs ...Event) {
	t.Helper()
	for _, ev := range evs {
		select {
		case s.events <- ev:
		case <-time.After(5 * time.Second):
			t.Fatalf("the guard's event reader blocked on %s %s", ev.Type, ev.Action)
		}
	}
}

// --- API ---

func (f *fakeDocker) Ping(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pings++
	if f.down {
		return "", errors.New("dial unix /fake/docker.sock: connect: connection refused")
	}
	return "1.41", nil
}

func (f *fakeDocker) Events(ctx context.Context, since time.Time) (<-chan Event, <-chan error) {
	f.mu.Lock()
	f.sinces = append(f.sinces, since)
	f.mu.Unlock()
	s := &fakeStream{events: make(chan Event), errs: make(chan error, 1), ctx: ctx}
	f.subs <- s
	return s.events, s.errs
}

func (f *fakeDocker) ListImages(ctx context.Context) ([]Image, error) {
	f.mu.Lock()
	gate := f.listGate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listImages++
	if err := f.failure("list-images"); err != nil {
		return nil, err
	}
	var out []Image
	for _, id := range f.imageOrder {
		if img := f.images[id]; img != nil {
			out = append(out, img.export(f.c8d))
		}
	}
	return out, nil
}

func (img *fakeImage) export(c8d bool) Image {
	out := Image{ID: img.id, RepoTags: slices.Clone(img.tags), RepoDigests: slices.Clone(img.digests), InContainerd: c8d}
	if c8d {
		for _, t := range img.tags {
			if d := repoOfName(t) + "@" + img.id; !slices.Contains(out.RepoDigests, d) {
				out.RepoDigests = append(out.RepoDigests, d)
			}
		}
	}
	return out
}

func (f *fakeDocker) InspectImage(ctx context.Context, ref string) (Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("inspect-image " + ref); err != nil {
		return Image{}, err
	}
	if looksLikeID(ref) {
		f.inspectsByID++
	}
	if img := f.lookupLocked(ref); img != nil {
		return img.export(f.c8d), nil
	}
	return Image{}, fmt.Errorf("%w: No such image: %s", ErrNotFound, ref)
}

func (f *fakeDocker) ImageIDOf(ctx context.Context, name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resolves++
	if err := f.failure("image-id-of " + name); err != nil {
		return "", err
	}
	if img := f.lookupLocked(name); img != nil {
		return img.id, nil
	}
	return "", fmt.Errorf("%w: No such image: %s", ErrNotFound, name)
}

// RemoveImageNameOf looks the name's image up, then removes the name.
func (f *fakeDocker) RemoveImageNameOf(ctx context.Context, name string) (string, bool, error) {
	id, err := f.ImageIDOf(ctx, name)
	if err != nil {
		return "", false, err
	}
	deleted, err := f.RemoveImageName(ctx, name)
	return id, deleted, err
}

func (f *fakeDocker) UntaggedBetween(_ context.Context, name string, from, to time.Time) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var id string
	for _, u := range f.untags {
		if u.at.Before(from) || u.at.After(to) || name != "" && fakeNorm(u.name) != fakeNorm(name) {
			continue
		}
		if id != "" && u.id != id {
			return ""
		}
		id = u.id
	}
	return id
}

// lookupLocked resolves a reference the way dockerd does: as a name first,
// then as a full or short ID.
func (f *fakeDocker) lookupLocked(ref string) *fakeImage {
	norm := fakeNorm(ref)
	for _, id := range f.imageOrder {
		img := f.images[id]
		if img == nil {
			continue
		}
		for _, n := range append(slices.Clone(img.tags), img.digests...) {
			if fakeNorm(n) == norm {
				return img
			}
		}
	}
	var found *fakeImage
	for _, img := range f.images {
		if isIDOf(ref, img.id) {
			if found != nil {
				return nil // ambiguous
			}
			found = img
		}
	}
	return found
}

func (f *fakeDocker) usedLocked(imageID string) bool {
	for _, c := range f.ctrs {
		if c.ImageID == imageID {
			return true
		}
		for _, m := range c.ImageMounts {
			if img := f.lookupLocked(m.Source); img != nil && img.id == imageID {
				return true
			}
		}
	}
	return false
}

// removeNamelessLocked is `docker rmi ID` of an image without names, which
// only nameless images are removed by (nameless.go): refused while a
// container uses or mounts it.
func (f *fakeDocker) removeNamelessLocked(imageID string) (bool, error) {
	img := f.images[imageID]
	if img == nil {
		return false, fmt.Errorf("%w: No such image: %s", ErrNotFound, imageID)
	}
	if len(img.tags)+len(img.digests) > 0 {
		panic("the guard removed an image with names by ID: " + imageID)
	}
	if f.usedLocked(imageID) {
		return false, fmt.Errorf("%w: conflict: unable to delete %s (must be forced) - image is being used by a container", ErrInUse, shortID(imageID))
	}
	f.mutations = append(f.mutations, "rmi "+imageID)
	delete(f.images, imageID)
	return true, nil
}

// singleReference is dockerd's isSingleReference: all references in one
// repository, and at most one of them a tag.
func singleReference(img *fakeImage) bool {
	refs := append(slices.Clone(img.tags), img.digests...)
	if len(refs) <= 1 {
		return len(refs) == 1
	}
	if len(img.tags) > 1 {
		return false
	}
	repos := map[string]bool{}
	for _, d := range img.digests {
		repos[repoOfName(d)] = true
	}
	single := refs[0]
	return len(repos) == 1 && repos[repoOfName(single)]
}

func (f *fakeDocker) RemoveImageName(ctx context.Context, name string) (bool, error) {
	f.mu.Lock()
	hook := f.beforeRemove
	f.mu.Unlock()
	if hook != nil {
		hook(name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("rmi " + name); err != nil {
		return false, err
	}
	if looksLikeID(name) {
		return f.removeNamelessLocked(name)
	}
	norm := fakeNorm(name)
	var img *fakeImage
	for _, i := range f.images {
		for _, n := range append(slices.Clone(i.tags), i.digests...) {
			if fakeNorm(n) == norm {
				img = i
			}
		}
	}
	if img == nil {
		return false, fmt.Errorf("%w: No such image: %s", ErrNotFound, name)
	}
	if singleReference(img) && f.usedLocked(img.id) {
		return false, fmt.Errorf("%w: conflict: unable to remove repository reference %q (must force) - container is using its referenced image %s",
			ErrInUse, name, shortID(img.id))
	}
	f.mutations = append(f.mutations, "rmi "+name)
	f.untags = append(f.untags, keptUntag{name: name, id: img.id, at: time.Now()})
	drop := func(list []string) []string {
		return slices.DeleteFunc(list, func(s string) bool { return fakeNorm(s) == norm })
	}
	img.tags, img.digests = drop(img.tags), drop(img.digests)
	if !isDigestName(name) {
		repo := repoOfName(name)
		if !slices.ContainsFunc(img.tags, func(t string) bool { return repoOfName(t) == repo }) {
			img.digests = slices.DeleteFunc(img.digests, func(d string) bool { return repoOfName(d) == repo })
		}
	}
	if len(img.tags)+len(img.digests) > 0 {
		return false, nil
	}
	delete(f.images, img.id)
	return true, nil
}

func (f *fakeDocker) ListContainers(ctx context.Context) ([]Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Container
	for _, id := range f.ctrOrder {
		c := f.ctrs[id]
		if c == nil {
			continue
		}
		listed := *c
		// dockerd lists the image ID when the name no longer resolves to
		// the container's image.
		if img := f.lookupLocked(c.Image); img == nil || img.id != c.ImageID {
			listed.Image = c.ImageID
		}
		out = append(out, listed)
	}
	return out, nil
}

func (f *fakeDocker) InspectContainer(ctx context.Context, id string) (Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.ctrs[id]; c != nil {
		return *c, nil
	}
	return Container{}, fmt.Errorf("%w: No such container: %s", ErrNotFound, id)
}

func (f *fakeDocker) StopContainer(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("stop " + id); err != nil {
		return err
	}
	c := f.ctrs[id]
	if c == nil {
		return fmt.Errorf("%w: No such container: %s", ErrNotFound, id)
	}
	f.mutations = append(f.mutations, "stop "+id)
	c.State = "exited"
	return nil
}

func (f *fakeDocker) RemoveContainer(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure("rm " + id); err != nil {
		return err
	}
	if f.ctrs[id] == nil {
		return fmt.Errorf("%w: No such container: %s", ErrNotFound, id)
	}
	f.mutations = append(f.mutations, "rm "+id)
	delete(f.ctrs, id)
	return nil
}

// isIDOf reports whether s is image ID id or a prefix of it, as dockerd
// resolves a short ID.
func isIDOf(s, id string) bool {
	s, id = strings.TrimPrefix(s, "sha256:"), strings.TrimPrefix(id, "sha256:")
	return s != "" && id != "" && isHex(s) && strings.HasPrefix(id, s)
}
