package docker

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pullguard/pullguard/policy"
)

// denyLocalPolicy is testPolicy under local-images: deny: on dockerd's own
// store (the fake's default) an allowed name stays only with a repository
// digest recorded by a pull.
func denyLocalPolicy(t testing.TB, mode policy.Mode, running policy.Running) *policy.Policy {
	t.Helper()
	if running == "" {
		running = policy.RunningKeep
	}
	return parsePolicy(t, fmt.Sprintf(`mode: %s
default: deny
running: %s
local-images: deny
allow:
  - image: reg.example/approved/**
`, mode, running))
}

// namelessID is an image without names, as a docker load of an archive
// without names leaves it.
var namelessID = "sha256:5eed" + strings.Repeat("0", 60)

// pulledApp is an allowed image as a pull leaves it: a tag and the
// repository digest it was pulled by.
func pulledApp(f *fakeDocker) {
	f.addImage(id(1), "reg.example/approved/app:1", "reg.example/approved/app@"+digestA)
}

// TestImageMountEvents: a container whose own image is allowed but which
// mounts a disallowed image is removed at its create and start events,
// whatever running: says; one that mounts only allowed images stays.
func TestImageMountEvents(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mounts  []ImageMount
		running policy.Running
		mode    policy.Mode
		want    []string
		stays   bool
	}{
		{name: "nameless image by ID", mounts: []ImageMount{{Source: namelessID, Target: "/x"}}, running: policy.RunningKeep,
			want: []string{"removed create " + namelessID + " ctr=" + shortID(cid(1))}},
		{name: "nameless image by short ID", mounts: []ImageMount{{Source: "5eed00000000", Target: "/x"}}, running: policy.RunningKeep,
			want: []string{"removed create " + "5eed00000000" + " ctr=" + shortID(cid(1))}},
		{name: "disallowed name, second mount", mounts: []ImageMount{{Source: "reg.example/approved/app:1", Target: "/a"}, {Source: "evil.example/miner:1", Target: "/x"}},
			running: policy.RunningStop, want: []string{"removed create evil.example/miner:1 ctr=" + shortID(cid(1))}},
		{name: "source gone", mounts: []ImageMount{{Source: "reg.example/approved/gone:1", Target: "/x"}}, running: policy.RunningKeep,
			want: []string{"removed create reg.example/approved/gone:1 ctr=" + shortID(cid(1))}},
		{name: "audit mode reports", mounts: []ImageMount{{Source: namelessID, Target: "/x"}}, mode: policy.ModeAudit,
			want: []string{"would-remove create " + namelessID + " ctr=" + shortID(cid(1))}, stays: true},
		{name: "allowed mounts", mounts: []ImageMount{{Source: "reg.example/approved/app:1", Target: "/x"}, {Source: id(1), Target: "/y"}}, stays: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, h := startOn(t, pulledApp, denyLocalPolicy(t, enforceUnless(tc.mode), tc.running))
			// Loaded while nobody listened: only the container's events are judged.
			f.addImage(id(2), "evil.example/miner:1")
			f.addImage(namelessID)
			h.stream.send(t, f.create(Container{ID: cid(1), Image: "reg.example/approved/app:1", ImageID: id(1), State: "created", ImageMounts: tc.mounts}))
			h.settle()
			h.wantRecords(tc.want...)
			if got := f.hasContainer(cid(1)); got != tc.stays {
				t.Errorf("container present = %v, want %v", got, tc.stays)
			}
			if !f.hasImage(id(1)) {
				t.Error("the allowed image was removed")
			}
		})
	}
}

// TestReconcileImageMountsAndNamelessImages: a reconcile stops and removes
// a container that mounts a disallowed image (as running: says for its own
// image), and removes nameless images under local-images: deny unless a
// container that stays uses them; allowed content stays.
func TestReconcileImageMountsAndNamelessImages(t *testing.T) {
	f := newFake()
	pulledApp(f)
	f.addImage(namelessID) // unused: goes
	f.addImage(id(6))      // mounted by a container that goes: goes after it
	f.addImage(id(7))      // run by a container kept under running: keep: stays
	f.addContainer(Container{ID: cid(1), Image: "reg.example/approved/app:1", ImageID: id(1), State: "running",
		ImageMounts: []ImageMount{{Source: "reg.example/approved/app:1", Target: "/a"}, {Source: id(6), Target: "/x"}}})
	f.addContainer(Container{ID: cid(2), Image: "reg.example/approved/app:1", ImageID: id(1), State: "running",
		ImageMounts: []ImageMount{{Source: "reg.example/approved/app@" + digestA, Target: "/a"}}})
	f.addContainer(Container{ID: cid(3), Image: id(7), ImageID: id(7), State: "running"})
	h := startGuard(t, f, denyLocalPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	h.connected()
	h.wantRecords(
		"removed reconcile "+namelessID,
		"reported reconcile "+id(6)+" ctr="+shortID(cid(1)),
		"reported reconcile "+id(7)+" ctr="+shortID(cid(3)),
	)
	if !f.hasImage(id(1)) || !f.hasContainer(cid(2)) || !f.hasImage(id(6)) || !f.hasImage(id(7)) {
		t.Errorf("allowed or kept content was removed: images %v %v %v, container %v", f.hasImage(id(1)), f.hasImage(id(6)), f.hasImage(id(7)), f.hasContainer(cid(2)))
	}

	// running: stop: the container that mounts it stops and goes, and the
	// image with it.
	f2 := newFake()
	pulledApp(f2)
	f2.addImage(id(6))
	f2.addContainer(Container{ID: cid(1), Image: "reg.example/approved/app:1", ImageID: id(1), State: "running",
		ImageMounts: []ImageMount{{Source: id(6), Target: "/x"}}})
	h2 := startGuard(t, f2, denyLocalPolicy(t, policy.ModeEnforce, policy.RunningStop))
	h2.connected()
	h2.wantRecords("stopped reconcile "+id(6)+" ctr="+shortID(cid(1)), "removed reconcile "+id(6))
	eq(t, "mutations", f2.mutationsSoFar(), []string{"stop " + cid(1), "rm " + cid(1), "rmi " + id(6)})
	if !f2.hasImage(id(1)) {
		t.Error("the allowed image was removed")
	}
}

// TestNamelessImagesUnderLocalImagesAllow: names alone are judged; a
// nameless image stays, as before.
func TestNamelessImagesUnderLocalImagesAllow(t *testing.T) {
	f := newFake()
	f.addImage(namelessID)
	h := startGuard(t, f, testPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	h.connected()
	h.wantRecords()
	if !f.hasImage(namelessID) {
		t.Error("a nameless image was removed under local-images: allow")
	}
}

// TestNamelessLoadEvent: a docker load of an archive without names is
// removed at its event under local-images: deny.
func TestNamelessLoadEvent(t *testing.T) {
	f, h := startOn(t, pulledApp, denyLocalPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	f.addImage(namelessID)
	h.stream.send(t, f.load(actionLoad, namelessID)...)
	h.settle()
	h.wantRecords("removed load " + namelessID)
	eq(t, "mutations", f.mutationsSoFar(), []string{"rmi " + namelessID})
}
