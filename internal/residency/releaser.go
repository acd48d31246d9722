package residency

import (
	"context"
	"runtime"
	"time"
)

// Releaser gives the executable's pages back each time the daemon's work
// has gone quiet. A reconcile, a burst of events, a collection: each maps
// in the code it runs, most of which the daemon does not run again until
// the next such burst; released once it is over, the daemon's resident set
// between bursts is what it needs while idle.
type Releaser struct {
	quiet   time.Duration
	release func() (Released, error)
	busy    chan struct{}
	// afterGC calls its func after every garbage collection until the
	// context is done.
	afterGC func(context.Context, func())
}

// NewReleaser makes a Releaser that releases once quiet has passed with no
// work since the last.
func NewReleaser(quiet time.Duration) *Releaser {
	return &Releaser{quiet: quiet, release: ReleaseExecutable, busy: make(chan struct{}, 1), afterGC: busyAfterEachGC}
}

// Busy notes that work happened. It never blocks, so a guard's event loop
// may call it.
func (r *Releaser) Busy() {
	select {
	case r.busy <- struct{}{}:
	default:
	}
}

// Run releases the executable's pages r.quiet after the last Busy of each
// burst of work, and tells done (nil: nobody) what it released, until ctx
// is done. Every garbage collection counts as work: it walks each
// goroutine's stack with the executable's tables of every function on it
// (several MiB of them), and the runtime forces one every two minutes.
// Without work it does nothing: what idling maps in stays, so that it is
// not faulted in again and again.
func (r *Releaser) Run(ctx context.Context, done func(Released, error)) {
	r.afterGC(ctx, r.Busy)
	t := time.NewTimer(r.quiet)
	t.Stop()
	defer t.Stop()
	var quiet <-chan time.Time // t's channel while work waits to be released
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.busy:
			t.Reset(r.quiet)
			quiet = t.C
		case <-quiet:
			quiet = nil
			rel, err := r.release()
			if done != nil {
				done(rel, err)
			}
		}
	}
}

// gcSentinel is garbage from the moment it is made; holding a pointer, it
// is not batched with other small objects, so its cleanup runs after the
// first collection that follows.
type gcSentinel struct{ _ *byte }

// busyAfterEachGC calls busy after every garbage collection until ctx is
// done.
func busyAfterEachGC(ctx context.Context, busy func()) {
	var arm func()
	arm = func() {
		if ctx.Err() != nil {
			return
		}
		runtime.AddCleanup(new(gcSentinel), func(struct{}) {
			busy()
			arm()
		}, struct{}{})
	}
	arm()
}
