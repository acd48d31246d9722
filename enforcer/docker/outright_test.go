package docker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pullguard/pullguard/policy"
)

// outrightPolicy pins no digest, so a name it denies by name is denied
// whatever content it names; approved/legacy:latest is denied by its tag
// while legacy's digest references stay allowed, and tagged/app allows only
// 1.x tags (a digest reference alone matches no rule with tags).
func outrightPolicy(t testing.TB, mode policy.Mode) *policy.Policy {
	t.Helper()
	return parsePolicy(t, fmt.Sprintf(`mode: %s
default: deny
local-images: allow
allow:
  - image: reg.example/approved/**
  - image: reg.example/tagged/app
    tags: ["1.*"]
deny:
  - image: reg.example/approved/legacy
    tags: [latest]
`, mode))
}

// TestPullOfANameDeniedOutright: a pulled name the policy denies whatever
// it names is removed after one lookup of its image's ID, without an
// inspection of the image; everything else is planned over the whole image
// as before, so an allowed name never goes with it.
func TestPullOfANameDeniedOutright(t *testing.T) {
	const approved = "reg.example/approved/app:1"
	tests := []struct {
		name  string
		mode  policy.Mode
		setup func(f *fakeDocker)
		event func(f *fakeDocker) Event
		want  []string
		// fast: the name was removed without inspecting the image.
		fast  bool
		names []string // what image id(1) keeps; nil: it is gone
	}{{
		name: "a denied image pulled: removed, its ID in the record",
		event: func(f *fakeDocker) Event {
			return f.pull(id(1), "reg.example/evil/miner:latest", "reg.example/evil/miner@"+digestB)
		},
		want: []string{"removed pull reg.example/evil/miner:latest"},
		fast: true,
	}, {
		name:  "pulled onto an image with an allowed name: only that name goes",
		setup: func(f *fakeDocker) { f.addImage(id(1), approved, "reg.example/approved/app@"+digestB) },
		event: func(f *fakeDocker) Event { return f.pull(id(1), "reg.example/library/nginx:1", "") },
		want:  []string{"untagged pull reg.example/library/nginx:1"},
		fast:  true,
		names: []string{approved, "reg.example/approved/app@" + digestB},
	}, {
		name: "a tag denied by a tags: rule, its digest reference denied alone: removed",
		event: func(f *fakeDocker) Event {
			return f.pull(id(1), "reg.example/tagged/app:2", "reg.example/tagged/app@"+digestB)
		},
		want: []string{"removed pull reg.example/tagged/app:2"},
		fast: true,
	}, {
		name: "a denied tag whose repository's digest references are allowed: planned over the image, and kept",
		event: func(f *fakeDocker) Event {
			return f.pull(id(1), "reg.example/approved/legacy:latest", "reg.example/approved/legacy@"+digestB)
		},
		want:  []string{"failed pull reg.example/approved/legacy:latest err"},
		names: []string{"reg.example/approved/legacy:latest", "reg.example/approved/legacy@" + digestB},
	}, {
		name:  "audit mode: reported, nothing removed",
		mode:  policy.ModeAudit,
		event: func(f *fakeDocker) Event { return f.pull(id(1), "reg.example/evil/miner:latest", "") },
		want:  []string{"would-remove pull reg.example/evil/miner:latest"},
		fast:  true,
		names: []string{"reg.example/evil/miner:latest"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, h := startOn(t, tt.setup, outrightPolicy(t, enforceUnless(tt.mode)))
			f.mu.Lock()
			inspects := f.inspectsByID
			f.mu.Unlock()
			h.stream.send(t, tt.event(f))
			h.settle()
			h.wantRecords(tt.want...)
			recs := h.rec.Records()
			if len(recs) == 1 && recs[0].ImageID != id(1) {
				t.Errorf("record's image ID = %q, want %s", recs[0].ImageID, id(1))
			}
			f.mu.Lock()
			inspected, resolved := f.inspectsByID-inspects, f.resolves
			f.mu.Unlock()
			if tt.fast && (inspected != 0 || resolved != 1) {
				t.Errorf("%d inspections by ID and %d lookups of the ID, want none and one", inspected, resolved)
			}
			if !tt.fast && inspected == 0 {
				t.Error("the image was not inspected: planned without its other names")
			}
			if tt.names == nil {
				if f.hasImage(id(1)) {
					t.Errorf("the image is still there with %q", f.names(id(1)))
				}
				return
			}
			eq(t, "names", f.names(id(1)), tt.names)
		})
	}
}

// TestManyNamesAreRemovedSideBySideAndBounded: a reconcile of an image with
// many disallowed names (what lost events leave behind) removes them as many
// at once as the guard has workers, and never more.
func TestManyNamesAreRemovedSideBySideAndBounded(t *testing.T) {
	const workers, names = 3, 20
	f, h := startOn(t, nil, outrightPolicy(t, policy.ModeEnforce), WithWorkers(workers))
	var mu sync.Mutex
	inflight, peak := 0, 0
	all := make(chan struct{}) // closed once workers removals wait side by side
	var once sync.Once
	f.mu.Lock()
	f.beforeRemove = func(string) {
		mu.Lock()
		inflight++
		peak = max(peak, inflight)
		if inflight == workers {
			once.Do(func() { close(all) })
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(5 * time.Second):
			once.Do(func() { close(all) }) // sequential: fail below, but finish
		}
		mu.Lock()
		inflight--
		mu.Unlock()
	}
	f.mu.Unlock()
	want := []string{"reg.example/approved/app:1"}
	f.addImage(id(1), want[0])
	for i := range names {
		f.addImage(id(1), fmt.Sprintf("reg.example/evil/lost:%d", i))
	}
	h.g.RequestReconcile()
	h.waitReconcile()
	eq(t, "names left", f.names(id(1)), want)
	if got := len(h.rec.Records()); got != names {
		t.Errorf("%d records, want %d", got, names)
	}
	mu.Lock()
	defer mu.Unlock()
	if peak != workers {
		t.Errorf("at most %d removals at once, want %d (the workers)", peak, workers)
	}
}

// containerdStoreDocker is the fake as Docker 29's containerd image store:
// a removal is followed by an untag event naming the name removed.
type containerdStoreDocker struct {
	*fakeDocker
	events chan<- Event // the guard's event stream
	// late: the untag events reach the stream only after the guard gave
	// up waiting for them (dockerd keeps them all the same).
	late bool
}

func (c *containerdStoreDocker) ContainerdImageStore(context.Context) (bool, error) { return true, nil }

func (c *containerdStoreDocker) RemoveImageName(ctx context.Context, name string) (bool, error) {
	c.mu.Lock()
	id := ""
	if img := c.lookupLocked(name); img != nil {
		id = img.id
	}
	c.mu.Unlock()
	deleted, err := c.fakeDocker.RemoveImageName(ctx, name)
	if err == nil {
		ev := Event{Type: typeImage, Action: actionUntag, ID: id, Attributes: map[string]string{"name": name}, Time: time.Now()}
		go func() {
			if c.late {
				time.Sleep(untagWait + time.Second)
			}
			c.events <- ev
		}()
	}
	return deleted, err
}

// TestOnTheContainerdStoreTheUntagEventNamesTheImage: on Docker 29's
// containerd image store a name denied outright is removed with no lookup
// at all, and its record takes the image ID from dockerd's untag event;
// audit mode removes nothing, so it looks the ID up. So it is whether or not
// the guard has a registry to ask about provenance, as the daemon always
// gives it one.
func TestOnTheContainerdStoreTheUntagEventNamesTheImage(t *testing.T) {
	for _, prov := range []struct {
		name string
		opts []Option
	}{
		{"names alone", nil},
		{"with a registry to ask", []Option{withRegistry(noNetworkRegistry{})}},
	} {
		t.Run(prov.name, func(t *testing.T) { testUntagEventNamesTheImage(t, prov.opts) })
	}
}

func testUntagEventNamesTheImage(t *testing.T, opts []Option) {
	for _, tt := range []struct {
		name    string
		mode    policy.Mode
		setup   func(f *fakeDocker)
		pulled  string
		want    string
		lookups int
		late    bool
	}{
		{"a denied image pulled", policy.ModeEnforce, nil, "reg.example/evil/miner:latest",
			"removed pull reg.example/evil/miner:latest", 0, false},
		{"pulled onto an image with an allowed name", policy.ModeEnforce,
			func(f *fakeDocker) { f.addImage(id(1), "reg.example/approved/app:1") }, "reg.example/library/nginx:1",
			"untagged pull reg.example/library/nginx:1", 0, false},
		{"the untag event late: read back from what dockerd keeps", policy.ModeEnforce,
			func(f *fakeDocker) { f.addImage(id(1), "reg.example/approved/app:1") }, "reg.example/library/nginx:1",
			"untagged pull reg.example/library/nginx:1", 0, true},
		{"audit mode", policy.ModeAudit, nil, "reg.example/evil/miner:latest",
			"would-remove pull reg.example/evil/miner:latest", 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			if tt.setup != nil {
				tt.setup(f)
			}
			events := make(chan Event)
			h := startGuardOn(t, f, &containerdStoreDocker{fakeDocker: f, events: events, late: tt.late}, outrightPolicy(t, tt.mode), opts...)
			h.connected()
			done := make(chan struct{})
			t.Cleanup(func() { close(done) })
			go func() { // dockerd's untag events, on the guard's stream
				for {
					select {
					case ev := <-events:
						h.stream.events <- ev
					case <-done:
						return
					}
				}
			}()
			h.stream.send(t, f.pull(id(1), tt.pulled, ""))
			h.settle()
			h.wantRecords(tt.want)
			if got := h.rec.Records()[0].ImageID; got != id(1) {
				t.Errorf("record's image ID = %q, want %s", got, id(1))
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.resolves != tt.lookups || f.inspectsByID != 0 {
				t.Errorf("%d lookups and %d inspections by ID, want %d and none", f.resolves, f.inspectsByID, tt.lookups)
			}
		})
	}
}

// TestTagsOfNamesDeniedOutright: names tag events put on an image that the
// policy denies whatever they name are removed without inspecting the
// image, and their records name the image the events said; a name that
// needs the image to be judged is still planned over it, and an allowed
// name stays.
func TestTagsOfNamesDeniedOutright(t *testing.T) {
	const approved = "reg.example/approved/app:1"
	for _, tt := range []struct {
		name      string
		mode      policy.Mode
		tags      []string
		want      []string
		names     []string // what image id(1) keeps
		inspected bool
	}{{
		name:  "denied outright: removed, the image not inspected",
		tags:  []string{"reg.example/evil/a:1", "reg.example/evil/b:1", "reg.example/library/nginx:1"},
		want:  []string{"untagged tag reg.example/evil/a:1", "untagged tag reg.example/evil/b:1", "untagged tag reg.example/library/nginx:1"},
		names: []string{approved},
	}, {
		name:      "a denied tag whose repository's digests are allowed: planned over the image",
		tags:      []string{"reg.example/evil/a:1", "reg.example/approved/legacy:latest"},
		want:      []string{"untagged tag reg.example/evil/a:1", "untagged tag reg.example/approved/legacy:latest"},
		names:     []string{approved},
		inspected: true,
	}, {
		name:  "audit mode: reported, nothing removed",
		mode:  policy.ModeAudit,
		tags:  []string{"reg.example/evil/a:1"},
		want:  []string{"would-remove tag reg.example/evil/a:1"},
		names: []string{approved, "reg.example/evil/a:1"},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			f, h := startOn(t, func(f *fakeDocker) { f.addImage(id(1), approved) }, outrightPolicy(t, enforceUnless(tt.mode)))
			f.mu.Lock()
			inspects := f.inspectsByID
			f.mu.Unlock()
			var evs []Event
			for _, n := range tt.tags {
				evs = append(evs, f.tag(id(1), n))
			}
			h.stream.send(t, evs...)
			h.settle()
			h.wantRecords(tt.want...)
			for _, r := range h.rec.Records() {
				if r.ImageID != id(1) {
					t.Errorf("record for %s names image %q, want %s", r.Image, r.ImageID, id(1))
				}
			}
			f.mu.Lock()
			inspected := f.inspectsByID - inspects
			f.mu.Unlock()
			if tt.inspected != (inspected > 0) {
				t.Errorf("%d inspections of the image, want inspected %v", inspected, tt.inspected)
			}
			eq(t, "names", f.names(id(1)), tt.names)
		})
	}
}
