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

// racyLastName is a fake Docker whose removals take a while and which, as
// dockerd 20.10 does, fails the removal that deletes an image when another
// removal of the image was under way meanwhile: both requests untag, both
// then delete the image, and the second fails, though its name is gone.
type racyLastName struct {
	*fakeDocker
	mu       sync.Mutex
	started  int
	finished int
}

func (r *racyLastName) RemoveImageName(ctx context.Context, name string) (bool, error) {
	r.mu.Lock()
	r.started++
	finishedBefore := r.finished
	r.mu.Unlock()
	time.Sleep(20 * time.Millisecond) // long enough for removals to overlap
	deleted, err := r.fakeDocker.RemoveImageName(ctx, name)
	r.mu.Lock()
	defer r.mu.Unlock()
	overlapped := finishedBefore < r.started-1 // another started before this ended, and had not finished when this began
	r.finished++
	if deleted && overlapped {
		return false, errors.New("Error response from daemon: unrecognized image ID " + id(1))
	}
	return deleted, err
}

// TestManyNamesOfOneImageTheLastGoesAlone: a reconcile that removes every
// name of an image removes them side by side, but the last name, whose
// removal deletes the image, only once the others are gone, so that
// dockerd 20.10 does not fail it: the journal says every name went, and
// none failed.
func TestManyNamesOfOneImageTheLastGoesAlone(t *testing.T) {
	f := newFake()
	var names []string
	for i := range 9 {
		names = append(names, fmt.Sprintf("reg.example/evil/app:%d", i))
	}
	f.addImage(id(1), names...)
	h := startGuardOn(t, f, &racyLastName{fakeDocker: f}, testPolicy(t, policy.ModeEnforce, policy.RunningKeep), WithWorkers(4))
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
