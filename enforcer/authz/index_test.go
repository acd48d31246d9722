package authz

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// The image index spares judged requests the nested Docker lookup, and
// drops what a change to the image store may have made wrong: a request
// that changes names (before and after dockerd serves it) or an image
// event.
func TestImageIndex(t *testing.T) {
	f := newFixture(t, loadPolicy(t, nil))
	b := createBody(reg + "/approved/busybox:1.0")
	create := rawCall("POST", "/v1.41/containers/create", jsonHeaders(b), b)
	allowed := func(step string) {
		t.Helper()
		if res := f.call(t, pathAuthZReq, create); !res.Allow {
			t.Fatalf("%s: refused %q", step, res.Msg)
		}
	}
	allowed("first")
	allowed("second")
	if n := f.images.callCount(); n != 1 {
		t.Fatalf("%d lookups for two requests about one image, want 1", n)
	}

	// The image loses its allowed name (docker rmi): the index must not
	// remember it.
	f.images.mu.Lock()
	f.images.images[reg+"/approved/busybox:1.0"] = LocalImage{ID: evilID, Names: []string{reg + "/evil/miner:1.0"}}
	f.images.mu.Unlock()
	rmi := rawCall("DELETE", "/v1.41/images/"+reg+"/approved/busybox:1.0", noBody, "")
	f.call(t, pathAuthZReq, rmi)
	f.call(t, pathAuthZRes, resCall("DELETE", "/v1.41/images/"+reg+"/approved/busybox:1.0", 200))
	if res := f.call(t, pathAuthZReq, create); res.Allow {
		t.Fatal("allowed from a stale index after the image store changed")
	}
	if n := f.images.callCount(); n != 2 {
		t.Errorf("%d lookups, want 2 (the entry was dropped once)", n)
	}

	// Reads change nothing; an event the index cannot follow forgets it.
	get := rawCall("GET", "/v1.41/images/json", nil, "")
	f.call(t, pathAuthZReq, get)
	f.call(t, pathAuthZRes, get)
	f.call(t, pathAuthZReq, create)
	if n := f.images.callCount(); n != 2 {
		t.Errorf("%d lookups after a read, want still 2", n)
	}
	f.srv.ImageEvent("load", evilID, evilID)
	f.call(t, pathAuthZReq, create)
	if n := f.images.callCount(); n != 3 {
		t.Errorf("%d lookups after a load event, want 3", n)
	}
}

// resCall is an AuthZRes call as dockerd encodes it after serving the
// request with status.
func resCall(method, uri string, status int) string {
	b, err := json.Marshal(map[string]any{"RequestMethod": method, "RequestUri": uri,
		"RequestHeaders": noBody, "ResponseStatusCode": status, "ResponseHeaders": map[string]string{"Api-Version": "1.41"}})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// store models Docker's image store for the index tests: names by image
// ID. sync writes what dockerd would resolve each name and short ID to
// into the fake resolver, as one atomic change of the store.
type store struct {
	mu    sync.Mutex
	names map[string][]string
	// containerd: list names as dockerd 29's containerd image store does,
	// each tag with a digest name of its repository at the image's ID.
	containerd bool
}

func newStore() *store {
	return &store{names: map[string][]string{
		okID:    {reg + "/approved/busybox:1.0"},
		mixedID: {reg + "/evil/miner:2.0", reg + "/approved/busybox:2.0"},
		evilID:  {reg + "/evil/miner:1.0"},
	}}
}

// tag moves name to the image id, as docker tag does.
func (s *store) tag(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, ns := range s.names {
		s.names[k] = slices.DeleteFunc(slices.Clone(ns), func(n string) bool { return n == name })
	}
	s.names[id] = append(s.names[id], name)
}

// untag removes name from whatever image has it, as docker rmi does.
func (s *store) untag(name string) { s.tag("", name); s.mu.Lock(); delete(s.names, ""); s.mu.Unlock() }

func (s *store) sync(f *fakeImages) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]LocalImage{}
	for id, names := range s.names {
		img := LocalImage{ID: id, Names: slices.Clone(names), InContainerd: s.containerd}
		if s.containerd {
			for _, n := range names {
				r, _ := reference.ParseNormalizedNamed(n)
				d, _ := reference.WithDigest(reference.TrimNamed(r), digest.Digest(id))
				if dn := reference.FamiliarString(d); !slices.Contains(img.Names, dn) {
					img.Names = append(img.Names, dn)
				}
			}
		}
		m[id], m[id[len("sha256:"):len("sha256:")+12]] = img, img
		for _, n := range names {
			m[n] = img
		}
	}
	f.mu.Lock()
	f.images = m
	f.mu.Unlock()
}

// checkIndex fails t if the index says more than the store: an image
// under a reference the store resolves otherwise, or a name the image does
// not have. Saying less (a name not yet known) only costs a lookup.
func checkIndex(t *testing.T, f *fixture, step string) {
	t.Helper()
	f.images.mu.Lock()
	truth := f.images.images
	f.images.mu.Unlock()
	x := &f.srv.index
	x.mu.Lock()
	defer x.mu.Unlock()
	for ref, e := range x.byRef {
		img, found := truth[ref]
		if !e.found {
			if found {
				t.Errorf("%s: the index says %s is not in the store; it is image %s", step, ref, img.ID)
			}
			continue
		}
		if !found || img.ID != e.img.ID {
			t.Errorf("%s: the index says %s is image %s; the store says %s (found %v)", step, ref, e.img.ID, img.ID, found)
			continue
		}
		for _, n := range e.img.Names {
			if !slices.Contains(img.Names, n) {
				t.Errorf("%s: the index says image %s (as %s) is named %s; the store names it %q", step, e.img.ID, ref, n, img.Names)
			}
		}
	}
}

// tagCall is POST /images/{src}/tag?repo=&tag= as the Docker CLI sends it.
func tagCall(src, repo, tag string) (uri string) {
	return "/v1.41/images/" + src + "/tag?" + url.Values{"repo": {repo}, "tag": {tag}}.Encode()
}

func (f *fixture) allows(t *testing.T, path, call string) bool {
	t.Helper()
	return f.call(t, path, call).Allow
}

func createCall(image string) string {
	b := createBody(image)
	return rawCall("POST", "/v1.41/containers/create", jsonHeaders(b), b)
}

// A tag that succeeds adds its name to the image the index knows: the
// next tag of the same image, and a create by its ID, need no lookup; the
// image that had the name loses it.
func TestIndexTagAddsName(t *testing.T) {
	f := newFixture(t, loadPolicy(t, nil))
	st := newStore()
	st.sync(f.images)
	src, dst := reg+"/approved/busybox:1.0", reg+"/approved/busybox"
	if !f.allows(t, pathAuthZReq, createCall("18c79d2bf870")) || !f.allows(t, pathAuthZReq, createCall(reg+"/approved/busybox:2.0")) {
		t.Fatal("refused a create of an allowed image")
	}
	lookups := f.images.callCount()
	for i, tag := range []string{"a", "b", "2.0"} {
		uri := tagCall(src, dst, tag)
		if !f.allows(t, pathAuthZReq, rawCall("POST", uri, noBody, "")) {
			t.Fatalf("tag %s refused", tag)
		}
		if tag == "2.0" {
			// A lookup of the image losing the name while the tag is in
			// flight, answered before dockerd makes it.
			f.allows(t, pathAuthZReq, createCall("5ca1ab1e0000"))
		}
		st.tag(okID, dst+":"+tag)
		st.sync(f.images)
		f.call(t, pathAuthZRes, resCall("POST", uri, 201))
		checkIndex(t, f, "after tag "+tag)
		if i == 0 && f.images.callCount() != lookups+1 {
			t.Errorf("first tag: %d lookups, want 1", f.images.callCount()-lookups)
		}
	}
	if n := f.images.callCount() - lookups; n != 2 {
		t.Errorf("three tags of one image: %d lookups, want 2 (its own once, the one losing a name once)", n)
	}
	e, _, ok := f.srv.index.get(src)
	if want := []string{src, dst + ":a", dst + ":b", dst + ":2.0"}; !ok || !slices.Equal(e.img.Names, want) {
		t.Errorf("index entry of %s: %q (present %v), want %q", src, e.img.Names, ok, want)
	}
	// The mixed image lost busybox:2.0, its only allowed name.
	if f.allows(t, pathAuthZReq, createCall("5ca1ab1e0000")) {
		t.Error("allowed a create of an image whose only allowed name a tag moved away")
	}
	checkIndex(t, f, "end")
}

// On dockerd 29's containerd image store a tag gives the image a digest
// name too; the index adds both, so judging a create of the new name needs
// no lookup and sees the names a lookup would.
func TestIndexTagAddsDigestNameOnContainerdStore(t *testing.T) {
	f := newFixture(t, loadPolicy(t, nil))
	st := newStore()
	st.containerd = true
	st.sync(f.images)
	src, dst := reg+"/approved/busybox:1.0", reg+"/approved/copy"
	if !f.allows(t, pathAuthZReq, createCall(src)) {
		t.Fatal("refused a create of an allowed image")
	}
	lookups := f.images.callCount()
	for _, tag := range []string{"a", "b"} {
		uri := tagCall(src, dst, tag)
		if !f.allows(t, pathAuthZReq, rawCall("POST", uri, noBody, "")) {
			t.Fatalf("tag %s refused", tag)
		}
		st.tag(okID, dst+":"+tag)
		st.sync(f.images)
		f.call(t, pathAuthZRes, resCall("POST", uri, 201))
		checkIndex(t, f, "after tag "+tag)
	}
	if n := f.images.callCount() - lookups; n != 0 {
		t.Errorf("two tags of an indexed image: %d lookups, want none", n)
	}
	e, _, ok := f.srv.index.get(src)
	f.images.mu.Lock()
	want := f.images.images[src].Names
	f.images.mu.Unlock()
	got := slices.Clone(e.img.Names)
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !ok || !slices.Equal(got, want) {
		t.Errorf("index entry of %s: %q (present %v), want what dockerd lists: %q", src, got, ok, want)
	}
}

// A tag dockerd refused, or that never reached dockerd's answer, adds
// nothing.
func TestIndexFailedTag(t *testing.T) {
	f := newFixture(t, loadPolicy(t, nil))
	st := newStore()
	st.sync(f.images)
	src := reg + "/approved/busybox:1.0"
	f.allows(t, pathAuthZReq, createCall(src))
	uri := tagCall(src, reg+"/approved/busybox", "x")
	f.call(t, pathAuthZReq, rawCall("POST", uri, noBody, ""))
	f.call(t, pathAuthZRes, resCall("POST", uri, 0)) // the handler failed: no status written
	if e, _, ok := f.srv.index.get(src); ok && len(e.img.Names) != 1 {
		t.Errorf("a failed tag added names: %q", e.img.Names)
	}
	checkIndex(t, f, "failed tag")
}

// Two tags of one name at once: which dockerd made last is unknown, so
// neither adds the name, and what they may have changed is dropped.
func TestIndexConcurrentTags(t *testing.T) {
	for _, last := range []string{okID, mixedID} {
		f := newFixture(t, loadPolicy(t, nil))
		st := newStore()
		st.sync(f.images)
		a, b := reg+"/approved/busybox:1.0", reg+"/approved/busybox:2.0"
		f.allows(t, pathAuthZReq, createCall(a))
		f.allows(t, pathAuthZReq, createCall(b))
		dst := reg + "/approved/busybox:new"
		ua, ub := tagCall(a, reg+"/approved/busybox", "new"), tagCall(b, reg+"/approved/busybox", "new")
		f.call(t, pathAuthZReq, rawCall("POST", ua, noBody, ""))
		f.call(t, pathAuthZReq, rawCall("POST", ub, noBody, ""))
		// dockerd makes both; last decides where the name ends.
		first := map[string]string{okID: mixedID, mixedID: okID}[last]
		st.tag(first, dst)
		st.sync(f.images)
		// Lookups between the two: the first image has the name then.
		f.allows(t, pathAuthZReq, createCall("18c79d2bf870"))
		f.allows(t, pathAuthZReq, createCall("5ca1ab1e0000"))
		st.tag(last, dst)
		st.sync(f.images)
		// The answers come in either order.
		f.call(t, pathAuthZRes, resCall("POST", ub, 201))
		checkIndex(t, f, "one answer")
		f.call(t, pathAuthZRes, resCall("POST", ua, 201))
		checkIndex(t, f, "both answers, "+last+" last")
		// The tag events, read late, in dockerd's order.
		f.srv.ImageEvent("tag", first, dst)
		f.srv.ImageEvent("tag", last, dst)
		checkIndex(t, f, "events")
		// And the index still serves: a lookup brings the truth back.
		f.allows(t, pathAuthZReq, createCall(a))
		f.allows(t, pathAuthZReq, createCall(b))
		checkIndex(t, f, "looked up again")
	}
}

// A tag then a removal of the image's allowed names: a create by ID is
// judged by the names the image has left, whether the removal is seen as
// a request or only as an event.
func TestIndexTagThenRemove(t *testing.T) {
	for _, via := range []string{"request", "event"} {
		f := newFixture(t, loadPolicy(t, nil))
		st := newStore()
		st.sync(f.images)
		src := reg + "/approved/busybox:1.0"
		dst := reg + "/approved/busybox:t"
		uri := tagCall(src, reg+"/approved/busybox", "t")
		if !f.allows(t, pathAuthZReq, rawCall("POST", uri, noBody, "")) {
			t.Fatal("tag refused")
		}
		st.tag(okID, dst)
		st.sync(f.images)
		f.call(t, pathAuthZRes, resCall("POST", uri, 201))
		if !f.allows(t, pathAuthZReq, createCall("18c79d2bf870")) {
			t.Fatal("create by ID refused")
		}
		// Both allowed names go; the image keeps a disallowed one.
		st.tag(okID, reg+"/evil/miner:3.0")
		for _, n := range []string{src, dst} {
			del := "/v1.41/images/" + n
			if via == "request" {
				f.call(t, pathAuthZReq, rawCall("DELETE", del, noBody, ""))
			}
			st.untag(n)
			st.sync(f.images)
			if via == "request" {
				// dockerd has removed the name and not yet answered.
				if got, want := f.allows(t, pathAuthZReq, createCall("18c79d2bf870")), n == src; got != want {
					t.Errorf("create by ID while removing %s: allowed %v, want %v", n, got, want)
				}
				f.call(t, pathAuthZRes, resCall("DELETE", del, 200))
			} else {
				f.srv.ImageEvent("untag", okID, okID)
			}
			checkIndex(t, f, via+": after removing "+n)
			if n == src && !f.allows(t, pathAuthZReq, createCall("18c79d2bf870")) {
				t.Errorf("%s: create by ID refused while the image keeps an allowed name", via)
			}
		}
		if via == "event" {
			// The disallowed name came by a tag seen only as an event.
			f.srv.ImageEvent("tag", okID, reg+"/evil/miner:3.0")
		}
		if f.allows(t, pathAuthZReq, createCall("18c79d2bf870")) {
			t.Errorf("%s: create by ID allowed after the image lost its allowed names", via)
		}
		checkIndex(t, f, via+": end")
	}
}

// A tag event read late, after a later tag moved the name away, does not
// put the name back.
func TestIndexStaleTagEvent(t *testing.T) {
	f := newFixture(t, loadPolicy(t, nil))
	st := newStore()
	st.sync(f.images)
	a, b := reg+"/approved/busybox:1.0", reg+"/approved/busybox:2.0"
	dst := reg + "/approved/busybox:moved"
	for _, step := range []struct{ src, id string }{{a, okID}, {b, mixedID}} {
		uri := tagCall(step.src, reg+"/approved/busybox", "moved")
		f.call(t, pathAuthZReq, rawCall("POST", uri, noBody, ""))
		st.tag(step.id, dst)
		st.sync(f.images)
		f.call(t, pathAuthZRes, resCall("POST", uri, 201))
		checkIndex(t, f, "tag from "+step.src)
	}
	f.allows(t, pathAuthZReq, createCall(a))
	f.srv.ImageEvent("tag", okID, dst) // the first tag's event
	checkIndex(t, f, "stale event")
	f.srv.ImageEvent("tag", mixedID, dst)
	checkIndex(t, f, "second event")
}

// A change that never gets its AuthZRes (dockerd refused it after
// pullguard allowed it) stops counting after a while, and the index is
// forgotten then: what it did is unknown.
func TestIndexPendingExpires(t *testing.T) {
	f := newFixture(t, loadPolicy(t, nil))
	now := testNow
	f.srv.now = func() time.Time { return now }
	src := reg + "/approved/busybox:1.0"
	f.allows(t, pathAuthZReq, createCall(src))
	f.call(t, pathAuthZReq, rawCall("POST", tagCall(src, reg+"/approved/busybox", "lost"), noBody, ""))
	now = now.Add(pendingTimeout + time.Second)
	uri := tagCall(src, reg+"/approved/busybox", "next")
	f.call(t, pathAuthZReq, rawCall("POST", uri, noBody, ""))
	f.call(t, pathAuthZRes, resCall("POST", uri, 201))
	if n := len(f.srv.index.pending); n != 0 {
		t.Errorf("%d changes still pending", n)
	}
	if _, _, ok := f.srv.index.get(src); ok {
		t.Error("the index kept an entry across a change whose outcome is unknown")
	}
}

// Events: pulls drop their repository, untags and deletes their image,
// anything not understood (or a reconcile's empty event) everything.
func TestIndexEvents(t *testing.T) {
	f := newFixture(t, loadPolicy(t, nil))
	fill := func() {
		for _, r := range []string{reg + "/approved/busybox:1.0", reg + "/evil/miner:1.0", reg + "/evil/miner:2.0", reg + "/evil/nothere:1"} {
			f.call(t, pathAuthZReq, createCall(r))
		}
	}
	has := func(ref string) bool { _, _, ok := f.srv.index.get(ref); return ok }
	for _, c := range []struct {
		action, id, name string
		kept             []string
		dropped          []string
	}{
		{"pull", reg + "/evil/miner:1.0", reg + "/evil/miner", []string{reg + "/approved/busybox:1.0"}, []string{reg + "/evil/miner:1.0", reg + "/evil/miner:2.0", reg + "/evil/nothere:1"}},
		{"untag", evilID, evilID, []string{reg + "/approved/busybox:1.0", reg + "/evil/miner:2.0"}, []string{reg + "/evil/miner:1.0"}},
		{"delete", mixedID, mixedID, []string{reg + "/approved/busybox:1.0"}, []string{reg + "/evil/miner:2.0"}},
		{"tag", evilID, reg + "/evil/miner:2.0", []string{reg + "/approved/busybox:1.0"}, []string{reg + "/evil/miner:2.0", reg + "/evil/miner:1.0"}},
		{"push", evilID, reg + "/evil/miner:1.0", []string{reg + "/approved/busybox:1.0", reg + "/evil/miner:1.0", reg + "/evil/nothere:1"}, nil},
		{"load", evilID, evilID, nil, []string{reg + "/approved/busybox:1.0"}},
		{"", "", "", nil, []string{reg + "/approved/busybox:1.0"}},
		{"untag", "9f477abac9c8", "", nil, []string{reg + "/approved/busybox:1.0"}}, // not an ID the index can match
	} {
		fill()
		f.srv.ImageEvent(c.action, c.id, c.name)
		for _, r := range c.kept {
			if !has(r) {
				t.Errorf("%s event: %s dropped", c.action, r)
			}
		}
		for _, r := range c.dropped {
			if has(r) {
				t.Errorf("%s event: %s kept", c.action, r)
			}
		}
	}
}

// Lookups that race a change are not kept: one answered before dockerd
// made the change would be stale after it.
func TestIndexLookupRacingChange(t *testing.T) {
	f := newFixture(t, loadPolicy(t, nil))
	wait := make(chan struct{})
	f.images.mu.Lock()
	f.images.wait = wait
	f.images.mu.Unlock()
	src := reg + "/approved/busybox:1.0"
	done := make(chan bool)
	go func() { done <- f.srv.index.imageID(src) == "" && f.allows(t, pathAuthZReq, createCall(src)) }()
	// The lookup is under way; a pull of the repository begins and ends.
	for f.images.callCount() == 0 {
		time.Sleep(time.Millisecond)
	}
	pull := "/v1.41/images/create?fromImage=" + url.QueryEscape(reg+"/approved/busybox") + "&tag=1.0"
	f.call(t, pathAuthZReq, rawCall("POST", pull, noBody, ""))
	close(wait)
	if !<-done {
		t.Fatal("create refused")
	}
	if _, _, ok := f.srv.index.get(src); ok {
		t.Error("kept a lookup that raced a pull of its repository")
	}
	f.call(t, pathAuthZRes, resCall("POST", pull, 200))
}

func TestChangesImages(t *testing.T) {
	for uri, want := range map[string]bool{
		"POST /v1.41/images/create?fromImage=x": true,
		"DELETE /v1.41/images/x":                true,
		"POST /images/x/tag?repo=y":             true,
		"POST /v1.41/build?t=x":                 true,
		"POST /v1.41/commit?container=c":        true,
		"POST /session":                         true,
		"GET /v1.41/images/json":                false,
		"HEAD /_ping":                           false,
		"POST /v1.41/containers/create":         false,
		"POST /v1.41/containers/abc/start":      false,
		"POST /v1.41/images/load?quiet=1":       true,
		"DELETE /v1.41/containers/abc?force=1":  false,
	} {
		method, u, _ := strings.Cut(uri, " ")
		if got := changesImages(method, u); got != want {
			t.Errorf("%s: %v, want %v", uri, got, want)
		}
	}
}

// newTagName and familiar give what tagName and Docker's RepoTags give.
func TestNewTagName(t *testing.T) {
	dig := "@sha256:" + strings.Repeat("a", 64)
	for _, c := range [][2]string{
		{"busybox", "x"}, {"busybox", ""}, {"library/busybox:1.0", "2"}, {"docker.io/library/busybox:1", ""},
		{"myorg/app", "v1"}, {"docker.io/myorg/app", ""}, {reg + "/approved/busybox:1.0", "bench"},
		{reg + "/library/x", ""}, {"busybox" + dig, "t"}, {"busybox" + dig, ""}, {"localhost/x", ""},
	} {
		want, werr := tagName(c[0], c[1])
		got, gerr := newTagName(c[0], c[1])
		if (werr != nil) != (gerr != nil) || werr == nil && got.String != want {
			t.Errorf("%q, tag %q: %q (%v), want %q (%v)", c[0], c[1], got.String, gerr, want, werr)
			continue
		}
		if werr != nil {
			continue
		}
		named, err := reference.ParseNormalizedNamed(want)
		if err != nil {
			t.Fatal(err)
		}
		if f := familiar(got); f != reference.FamiliarString(named) {
			t.Errorf("%q: familiar %q, want %q", want, f, reference.FamiliarString(named))
		}
	}
}
