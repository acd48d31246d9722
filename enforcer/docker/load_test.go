package docker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pullguard/pullguard/policy"
)

// TestLoadMovesApprovedName: dockerd 20.10's docker load moves a name the
// tarball carries onto the loaded content, with one load event and no tag
// event. Under local-images: deny the name goes from the loaded content (it
// came from no repository), the approved content it left stays with its
// repository digest, and the log says which name moved.
func TestLoadMovesApprovedName(t *testing.T) {
	name, digest := "reg.example/approved/app:1", "reg.example/approved/app@"+digestA
	f := newFake()
	f.addImage(id(1), name, digest)
	h := startGuard(t, f, mustProvenancePolicy(t))
	h.connected()

	f.addImage(id(2), name) // what the load did
	h.stream.send(t, Event{Type: typeImage, Action: actionLoad, ID: id(2), Time: time.Now()})
	h.settle()

	if f.hasImage(id(2)) {
		t.Errorf("the loaded content kept %v", f.names(id(2)))
	}
	if got := f.names(id(1)); len(got) != 1 || got[0] != digest {
		t.Errorf("the approved content has names %q, want only %s", got, digest)
	}
	h.wantRecords("removed load " + name)
	moved := false
	for _, e := range h.logs.AllEntries() {
		if strings.Contains(e.Message, "docker load moved "+name+" from image "+shortID(id(1))) {
			moved = true
		}
	}
	if !moved {
		t.Errorf("no log entry says that the load moved %s", name)
	}
	for _, r := range h.rec.Records() {
		if !strings.Contains(r.Decision.Reason, policy.ReasonLocalContent) {
			t.Errorf("reason %q, want %q", r.Decision.Reason, policy.ReasonLocalContent)
		}
	}
}

// ContainerdImageStore: the fake is dockerd 20.10's own image store.
func (f *fakeDocker) ContainerdImageStore(ctx context.Context) (bool, error) { return false, nil }

// TestListedDigests: on Docker 29's containerd image store a listing gives
// one record's digest per image, inspect every name's; the listing is
// completed the way inspect computes them.
func TestListedDigests(t *testing.T) {
	img := Image{ID: digestA, RepoTags: []string{"reg.example/approved/app:1", "nginx:1.25", "reg.example/approved/app:2"},
		RepoDigests: []string{"nginx@" + digestA}}
	got := listedDigests(img)
	want := []string{"nginx@" + digestA, "reg.example/approved/app@" + digestA}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("listedDigests = %q, want %q", got, want)
	}
}
