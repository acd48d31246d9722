package docker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// slowRemovals is a fake Docker whose removals take a while, long enough
// for removals made side by side to overlap, and which counts how many are
// under way at once. With racy, it fails, as dockerd 20.10 does, the
// removal that deletes an image when another removal was under way
// meanwhile: both requests untag, both then delete the image, and the
// second fails, though its name is gone.
type slowRemovals struct {
	*fakeDocker
	racy bool

	mu                   sync.Mutex
	started, finished    int
	inFlight, mostAtOnce int
}

func (r *slowRemovals) RemoveImageName(ctx context.Context, name string) (bool, error) {
	r.mu.Lock()
	r.started++
	r.inFlight++
	r.mostAtOnce = max(r.mostAtOnce, r.inFlight)
	finishedBefore := r.finished
	r.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	deleted, err := r.fakeDocker.RemoveImageName(ctx, name)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight--
	// Another removal started before this one ended, and had not finished
	// when this one began.
	overlapped := finishedBefore < r.started-1
	r.finished++
	if r.racy && deleted && overlapped {
		return false, errors.New("Error response from daemon: unrecognized image ID " + id(1))
	}
	return deleted, err
}

func (r *slowRemovals) most() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mostAtOnce
}

// manyNames are n disallowed names of one image.
func manyNames(n int) []string {
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("reg.example/evil/app:%d", i))
	}
	return names
}

// TestManyNamesAreRemovedSideBySideByDefault: a reconcile removes the many
// disallowed names of an image (after lost events, say) as many at once as
// the guard has workers, by default too.
func TestManyNamesAreRemovedSideBySideByDefault(t *testing.T) {
	f := newFake()
	f.addImage(id(1), append(manyNames(12), "reg.example/approved/app:1")...)
	api := &slowRemovals{fakeDocker: f}
	h := startGuardOn(t, f, api, testPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	h.connected()

	eq(t, "names", f.names(id(1)), []string{"reg.example/approved/app:1"})
	if got := api.most(); got != DefaultWorkers {
		t.Errorf("at most %d removals at once, want %d (the default workers)", got, DefaultWorkers)
	}
}

// TestManyNamesOfOneImageTheLastGoesAlone: a reconcile that removes every
// name of an image removes them side by side, but the last name, whose
// removal deletes the image, only once the others are gone, so that
// dockerd 20.10 does not fail it: the journal says every name went, and
// none failed.
func TestManyNamesOfOneImageTheLastGoesAlone(t *testing.T) {
	f := newFake()
	names := manyNames(9)
	f.addImage(id(1), names...)
	h := startGuardOn(t, f, &slowRemovals{fakeDocker: f, racy: true}, testPolicy(t, policy.ModeEnforce, policy.RunningKeep))
	h.connected()

	if f.hasImage(id(1)) {
		t.Fatalf("the image is still there with names %q", f.names(id(1)))
	}
	counts := map[enforcer.Action]int{}
	for _, rec := range h.rec.Records() {
		counts[rec.Action]++
		if rec.Err != nil {
			t.Errorf("%s %s: %v", rec.Action, rec.Image, rec.Err)
		}
	}
	want := map[enforcer.Action]int{enforcer.Untagged: len(names) - 1, enforcer.Removed: 1}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("records by action: got %v, want %v", counts, want)
	}
}
