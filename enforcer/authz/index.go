package authz

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pullguard/pullguard/policy"
)

// imageIndex remembers which local image each reference resolved to, so
// that judging POST /containers/create or /images/{name}/tag needs no
// nested Docker API call (which passes through this plugin too and costs
// a round trip through dockerd).
//
// It is a cache of Docker's answers, kept true by being pessimistic: what
// a change to the image store may have made wrong is dropped (and looked
// up again when next needed), before dockerd makes the change and again
// after. Only one thing is ever added without asking Docker: the name a
// tag request gave an image (and, on the containerd image store, the
// digest name dockerd lists with it), once dockerd has answered that the
// tag succeeded and nothing else touched the image store meanwhile. Events
// only ever drop entries: an event may be read late, after a later change.
//
// What is dropped, by the change:
//   - a tag: every entry that could now resolve or be named differently
//     (a reference in the new name's repository, an image that held the
//     name), except the tagged image's own;
//   - an untag or delete: the image the request names, whole, and every
//     reference that names it;
//   - a pull: everything of the pulled repository;
//   - anything else (load, import, build, commit, BuildKit's API, prune,
//     an event the index does not understand, a reconcile): everything.
//
// A reference Docker did not find is dropped by every change: any new
// image or name could be what it now means.
type imageIndex struct {
	mu    sync.Mutex
	gen   uint64
	byRef map[string]indexEntry
	// pending are the changes the plugin allowed whose AuthZRes has not
	// come yet, oldest first.
	pending []*pendingChange
}

type indexEntry struct {
	img   LocalImage
	found bool
	// repo is the repository the reference would name ("" for an ID):
	// a new name in it may change what the reference means.
	repo string
	// names are img.Names parsed: their full references and repositories.
	names []policy.Ref
}

// changeKind is how much of the index a change may make wrong.
type changeKind int

const (
	changeAll    changeKind = iota // anything: a load, a build, an event not understood
	changeTag                      // a name added to an image
	changeRepo                     // a pull: any name of one repository
	changeRemove                   // an untag or a delete of what one name or ID resolves to
)

// change is what an allowed request may do to Docker's image store.
type change struct {
	kind changeKind
	// name is the tag's new name, a name in the pulled repository, or the
	// name removed (zero when the removal names an ID).
	name policy.Ref
	// familiar is the tag's new name as Docker lists it (RepoTags).
	familiar string
	// typed is what a removal names, as the request gave it.
	typed string
	// image is the ID of the image a tag names, when the index knew it.
	image string
}

// pendingChange is a change between its AuthZReq and its AuthZRes.
type pendingChange struct {
	// call pairs the AuthZRes with the AuthZReq: dockerd sends both with
	// the same method and URI.
	call  string
	began time.Time
	change
	// overlapped: another change began or was reported while this one
	// was in flight, so which of them dockerd made last is unknown.
	overlapped bool
}

// maxIndexEntries bounds the index; when full it starts over.
const maxIndexEntries = 4096

// pendingTimeout is how long a change may wait for its AuthZRes. dockerd
// sends none when the request fails before its handler (another plugin
// refusing it, dockerd stopping); such a change is taken as made, in
// whatever way, and the index forgotten.
const pendingTimeout = time.Minute

func newEntry(typed string, img LocalImage, found bool) indexEntry {
	e := indexEntry{img: img, found: found}
	if r, err := policy.ParseRef(typed); err == nil {
		e.repo = r.Name
	}
	for _, n := range img.Names {
		if r, err := policy.ParseRef(n); err == nil {
			e.names = append(e.names, r)
		}
	}
	return e
}

// has reports whether the image has the name full (normalized).
func (e *indexEntry) has(full string) bool {
	for i := range e.names {
		if e.names[i].String == full {
			return true
		}
	}
	return false
}

// inRepo reports whether the reference or one of the image's names is in
// the repository repo.
func (e *indexEntry) inRepo(repo string) bool {
	if e.repo == repo {
		return true
	}
	for i := range e.names {
		if e.names[i].Name == repo {
			return true
		}
	}
	return false
}

func (x *imageIndex) get(ref string) (indexEntry, uint64, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.byRef[ref]
	return e, x.gen, ok
}

// put keeps a lookup's result unless the store changed since gen, when
// the lookup began: its answer may be from before or after the change.
func (x *imageIndex) put(gen uint64, ref string, e indexEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if gen != x.gen {
		return
	}
	if x.byRef == nil || len(x.byRef) >= maxIndexEntries {
		x.byRef = make(map[string]indexEntry)
	}
	x.byRef[ref] = e
}

// forget drops everything: the image store may have changed in any way.
func (x *imageIndex) forget() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gen++
	x.byRef = nil
	x.markOverlapped()
}

// imageID is the ID of the image ref resolved to, if the index knows one.
func (x *imageIndex) imageID(ref string) string {
	e, _, ok := x.get(ref)
	if !ok || !e.found {
		return ""
	}
	return e.img.ID
}

// begin records a change the plugin allowed, before dockerd makes it, and
// drops what it may make wrong.
func (x *imageIndex) begin(call string, c change, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gen++
	x.expire(now)
	x.markOverlapped()
	x.pending = append(x.pending, &pendingChange{call: call, began: now, change: c, overlapped: len(x.pending) > 0})
	x.drop(c, false)
}

// end records that dockerd answered the request call: ok when it says the
// change was made. A tag that was the only change in flight adds its name
// to the image; anything else drops again what the change may have made
// wrong, including what lookups kept while it was in flight.
func (x *imageIndex) end(call string, ok bool, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gen++
	x.expire(now)
	i := slices.IndexFunc(x.pending, func(p *pendingChange) bool { return p.call == call })
	if i < 0 {
		// Its AuthZReq was not seen (pullguard restarted) or timed out.
		x.byRef = nil
		x.markOverlapped()
		return
	}
	p := x.pending[i]
	x.pending = slices.Delete(x.pending, i, i+1)
	if p.kind == changeTag && ok && !p.overlapped && p.image != "" {
		x.addTag(p.change)
		return
	}
	x.drop(p.change, true)
	if p.kind != changeTag || ok {
		// This change may have been made after one still in flight.
		x.markOverlapped()
	}
}

// event applies an image event Docker reported: action, the actor's ID and
// its name attribute. Events only drop entries: one read late may describe
// an image store that a later change has already changed again.
func (x *imageIndex) event(action, id, name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch action {
	case "push", "save":
		return // reads
	}
	x.gen++
	switch action {
	case "tag":
		r, err := policy.ParseRef(name)
		if err != nil || !isFullImageID(id) {
			break
		}
		// The tagged image's entries without the name are kept when a tag
		// in flight will add it; a tag in flight of anything else is
		// overlapped.
		var expected bool
		for _, p := range x.pending {
			if p.kind == changeTag && p.image == id && p.name.String == r.String {
				expected = expected || !p.overlapped
			} else {
				p.overlapped = true
			}
		}
		x.dropIf(func(e *indexEntry) bool {
			if e.img.ID == id {
				return !e.has(r.String) && !expected
			}
			return e.repo == r.Name || e.has(r.String)
		})
		return
	case "untag", "delete":
		if !isFullImageID(id) {
			break
		}
		r, err := policy.ParseRef(name)
		x.dropIf(func(e *indexEntry) bool {
			return e.img.ID == id || err == nil && (e.repo == r.Name || e.has(r.String))
		})
		x.markOverlapped()
		return
	case "pull":
		// The actor is the reference pulled; the name attribute, when
		// present, its repository.
		if name == "" {
			name = id
		}
		if r, err := policy.ParseRef(name); err == nil {
			x.drop(change{kind: changeRepo, name: r}, true)
			x.markOverlapped()
			return
		}
	}
	x.byRef = nil
	x.markOverlapped()
}

// addTag applies a tag dockerd made while nothing else changed: the name
// moves to the tagged image.
func (x *imageIndex) addTag(c change) {
	for ref, e := range x.byRef {
		switch {
		case !e.found:
			delete(x.byRef, ref)
		case e.img.ID != c.image:
			if e.repo == c.name.Name || e.has(c.name.String) {
				delete(x.byRef, ref)
			}
		case !e.has(c.name.String):
			// A new slice: callers may hold the old one. Docker lists tags
			// before digests.
			names := make([]string, 0, len(e.img.Names)+1)
			at := slices.IndexFunc(e.img.Names, func(n string) bool { return strings.Contains(n, "@") })
			if at < 0 {
				at = len(e.img.Names)
			}
			names = append(append(append(names, e.img.Names[:at]...), c.familiar), e.img.Names[at:]...)
			e.names = append(slices.Clip(e.names), c.name)
			// The containerd image store lists a digest name for every
			// name: its repository at the image's target, which is the
			// image's ID there.
			if d, err := policy.ParseRef(c.name.Name + "@" + e.img.ID); e.img.InContainerd && err == nil && !e.has(d.String) {
				names = append(names, familiar(d))
				e.names = append(e.names, d)
			}
			e.img.Names = names
			x.byRef[ref] = e
		}
	}
}

// drop removes the entries c may make wrong; after is set once dockerd has
// made it (or may have): a tag's own image may then have the name too.
func (x *imageIndex) drop(c change, after bool) {
	switch c.kind {
	case changeTag:
		x.dropIf(func(e *indexEntry) bool {
			if e.img.ID == c.image && c.image != "" && !after {
				return false
			}
			return e.img.ID == c.image || e.repo == c.name.Name || e.has(c.name.String)
		})
	case changeRepo:
		x.dropIf(func(e *indexEntry) bool { return e.inRepo(c.name.Name) })
	case changeRemove:
		// Every image the removal may mean: by name, by ID or ID prefix.
		hexID := strings.TrimPrefix(c.typed, "sha256:")
		isHex := hexID != "" && strings.Trim(hexID, "0123456789abcdef") == ""
		ids := map[string]bool{}
		for ref, e := range x.byRef {
			if !e.found {
				continue
			}
			if ref == c.typed || c.name.String != "" && e.has(c.name.String) ||
				isHex && strings.HasPrefix(strings.TrimPrefix(e.img.ID, "sha256:"), hexID) {
				ids[e.img.ID] = true
			}
		}
		// Removing a tag may remove the repository's digests with it.
		x.dropIf(func(e *indexEntry) bool {
			return ids[e.img.ID] || c.name.Name != "" && e.inRepo(c.name.Name)
		})
	default:
		x.byRef = nil
	}
}

// dropIf removes the entries f selects, and every reference Docker did
// not find.
func (x *imageIndex) dropIf(f func(*indexEntry) bool) {
	for ref, e := range x.byRef {
		if !e.found || f(&e) {
			delete(x.byRef, ref)
		}
	}
}

// markOverlapped marks every change in flight as overlapped.
func (x *imageIndex) markOverlapped() {
	for _, p := range x.pending {
		p.overlapped = true
	}
}

// expire gives up on changes whose AuthZRes is overdue.
func (x *imageIndex) expire(now time.Time) {
	n := len(x.pending)
	x.pending = slices.DeleteFunc(x.pending, func(p *pendingChange) bool { return now.Sub(p.began) > pendingTimeout })
	if len(x.pending) < n {
		x.byRef = nil
		x.markOverlapped()
	}
}

// isFullImageID reports whether id is sha256:<64 hex>, as image events
// name images.
func isFullImageID(id string) bool {
	h, ok := strings.CutPrefix(id, "sha256:")
	return ok && len(h) == 64 && strings.Trim(h, "0123456789abcdef") == ""
}

// resolve finds the local image typed means to Docker, from the index or,
// on a miss, by asking Docker.
func (s *Server) resolve(ctx context.Context, typed string) (LocalImage, bool, error) {
	e, gen, ok := s.index.get(typed)
	if ok {
		return e.img, e.found, nil
	}
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	img, found, err := s.images.ResolveImage(rctx, typed)
	if err == nil {
		s.index.put(gen, typed, newEntry(typed, img, found))
	}
	return img, found, err
}

// ImageEvent tells the plugin about an image event Docker reported (its
// action, actor ID and name attribute), so that it drops what the event
// may have made wrong. An empty action means that events may have been
// missed: the index is forgotten.
func (s *Server) ImageEvent(action, id, name string) { s.index.event(action, id, name) }
