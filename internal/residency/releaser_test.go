package residency

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// fakeReleases counts a Releaser's releases and when they came.
type fakeReleases struct {
	mu   sync.Mutex
	at   []time.Time
	wake chan struct{}
}

// newReleaser makes a Releaser whose releases f counts; a collection is
// work only with gc set (the tests' own collections come at any time).
func newReleaser(quiet time.Duration, gc bool) (*Releaser, *fakeReleases) {
	f := &fakeReleases{wake: make(chan struct{}, 100)}
	r := NewReleaser(quiet)
	if !gc {
		r.afterGC = func(context.Context, func()) {}
	}
	r.release = func() (Released, error) {
		f.mu.Lock()
		f.at = append(f.at, time.Now())
		f.mu.Unlock()
		f.wake <- struct{}{}
		return Released{Mappings: 1}, nil
	}
	return r, f
}

func (f *fakeReleases) times() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.at...)
}

func (f *fakeReleases) await(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for len(f.times()) < n {
		select {
		case <-f.wake:
		case <-deadline:
			t.Fatalf("%d releases after 30 s, want %d", len(f.times()), n)
		}
	}
}

// A burst of work is released once, a quiet period after its last piece;
// the next burst once more; no work, no release.
func TestReleaserReleasesOnceAfterEachBurst(t *testing.T) {
	const quiet = 300 * time.Millisecond
	r, f := newReleaser(quiet, false)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx, nil)
	}()

	time.Sleep(2 * quiet)
	if n := len(f.times()); n != 0 {
		t.Fatalf("%d releases before any work", n)
	}
	for burst := 1; burst <= 2; burst++ {
		for range 50 {
			r.Busy()
		}
		last := time.Now()
		f.await(t, burst)
		if got := f.times()[burst-1]; got.Sub(last) < quiet {
			t.Errorf("burst %d released %v after its last work, before the quiet period (%v)", burst, got.Sub(last), quiet)
		}
		time.Sleep(3 * quiet) // nothing more to release
		if n := len(f.times()); n != burst {
			t.Fatalf("%d releases after %d bursts of work", n, burst)
		}
	}

	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// Work that goes on puts the release off until it stops.
func TestReleaserWaitsForQuiet(t *testing.T) {
	const quiet = time.Second
	r, f := newReleaser(quiet, false)
	go r.Run(t.Context(), nil)
	start := time.Now()
	var last time.Time
	for time.Since(start) < 2*quiet {
		r.Busy()
		last = time.Now()
		time.Sleep(quiet / 20)
	}
	// Under load a pause in the work can outlast the quiet period and be
	// released; the release that matters is the one after the last work.
	var after time.Time
	deadline := time.After(30 * time.Second)
	for after.IsZero() {
		for _, at := range f.times() {
			if at.After(last) {
				after = at
			}
		}
		if after.IsZero() {
			select {
			case <-f.wake:
			case <-deadline:
				t.Fatal("no release within 30 s of the last work")
			}
		}
	}
	if after.Sub(last) < quiet {
		t.Errorf("released %v after the last work, want at least %v", after.Sub(last), quiet)
	}
	for i, at := range f.times() {
		if at.Before(start.Add(quiet)) {
			t.Errorf("release %d came %v after the work began, less than the quiet period", i, at.Sub(start))
		}
	}
}

// A garbage collection is work: it maps in the tables of every function on
// every goroutine's stack.
func TestReleaserReleasesAfterGC(t *testing.T) {
	r, f := newReleaser(100*time.Millisecond, true)
	go r.Run(t.Context(), nil)
	time.Sleep(300 * time.Millisecond)
	n := len(f.times())
	runtime.GC()
	f.await(t, n+1)
}
