// Package engine is the machinery every runtime guard shares: the run loop
// (connect, capped backoff, subscribe, reconcile at start, reconnect,
// reload and whenever events were lost), a merging keyed queue with its
// workers, and the executor that carries out planned steps. A runtime
// adapter supplies only what differs between runtimes: how to connect,
// subscribe, turn an event into work, reconcile, and handle one object.
package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
)

// Job is one object an event names: K identifies it (two events about one
// object merge), V is what the adapter wants to know about the events.
type Job[K comparable, V any] struct {
	Key   K
	Value V
}

// Runtime is what a runtime adapter supplies to the engine.
type Runtime[E any, K comparable, V any] interface {
	// Connect checks that the runtime answers; detail is logged with the
	// connection (an API version).
	Connect(ctx context.Context) (detail string, err error)
	// Subscribe streams events from since (zero: from now) until ctx is
	// done. The error channel yields one error when the stream ends.
	Subscribe(ctx context.Context, since time.Time) (<-chan E, <-chan error)
	// Jobs turns an event into the objects to look at, and says when the
	// runtime emitted it (zero when it does not say).
	Jobs(ev E) (at time.Time, jobs []Job[K, V])
	// Reconcile judges everything the runtime holds.
	Reconcile(ctx context.Context, why string) error
	// Handle judges one object events named, and acts on it.
	Handle(ctx context.Context, key K, v V)
}

// Defaults of Config.
const (
	DefaultMinBackoff = 250 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
	DefaultWorkers    = 4
	// DefaultLagLimit: an event read this long after the runtime emitted
	// it, or a pause this long in the guard's own clock, means events may
	// have been dropped for a slow reader (dockerd drops them), so the
	// guard reconciles at once instead of waiting for the periodic resync.
	DefaultLagLimit = time.Second

	connectTimeout = 10 * time.Second
	// firstConnectTimeout bounds the very first attempt: at boot systemd
	// holds docker.socket open while docker.service waits for pullguard
	// (Before=docker.service), so a ping hangs; pullguard must still
	// report ready.
	firstConnectTimeout = 2 * time.Second
	heartbeat           = 250 * time.Millisecond
)

// Config configures a Loop.
type Config struct {
	// Runtime is enforcer.RuntimeDocker or enforcer.RuntimeContainerd.
	Runtime string
	Log     logrus.FieldLogger
	// MinBackoff and MaxBackoff bound the wait between attempts to reach
	// the runtime (and to retry a failed reconcile); it doubles from min to
	// max, and starts over after a connection that held for MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Workers is how many objects are handled at once.
	Workers int
	// LagLimit: see DefaultLagLimit; negative turns lag detection off.
	LagLimit time.Duration
	// Observer, when set, is told of reconciles, connections and lag.
	Observer enforcer.Observer
}

type nopObserver struct{}

func (nopObserver) Reconciled(string, string, time.Duration, error) {}
func (nopObserver) Connected(string, bool)                          {}
func (nopObserver) Behind(string, string)                           {}
func (nopObserver) Event(string)                                    {}

// Loop runs one runtime guard.
type Loop[E any, K comparable, V any] struct {
	rt    Runtime[E, K, V]
	cfg   Config
	queue *Queue[K, V]

	reconcileReq chan string
	first        chan struct{}
	firstOnce    sync.Once
	// lastEvent is the newest event time read (UnixNano), so that a new
	// stream resumes where the old one broke off.
	lastEvent atomic.Int64
	// reconcileStart is when the last reconcile began (UnixNano): an event
	// emitted before it is covered by it, however late it is read.
	reconcileStart atomic.Int64
	connected      atomic.Bool
	// progress is when the event loop last made progress (UnixNano).
	progress atomic.Int64

	holdMu    sync.Mutex
	holdUntil time.Time
	holdTimer *time.Timer
}

// New makes a loop over rt. merge combines the values of one key queued
// twice (nil keeps the first).
func New[E any, K comparable, V any](rt Runtime[E, K, V], cfg Config, merge func(old, new V) V) *Loop[E, K, V] {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.Workers < 1 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.LagLimit == 0 {
		cfg.LagLimit = DefaultLagLimit
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	return &Loop[E, K, V]{
		rt: rt, cfg: cfg, queue: NewQueue[K, V](merge),
		reconcileReq: make(chan string, 1),
		first:        make(chan struct{}),
	}
}

// Workers is how many jobs the loop handles at once, the default if the
// configuration gave none: a runtime that acts side by side within one job
// (many names of one image) goes as wide.
func (l *Loop[E, K, V]) Workers() int { return l.cfg.Workers }

// RequestReconcile asks for a full pass, e.g. after a policy reload. It
// never blocks; requests made while one is pending are one.
func (l *Loop[E, K, V]) RequestReconcile() { l.request("requested") }

func (l *Loop[E, K, V]) request(why string) {
	select {
	case l.reconcileReq <- why:
	default:
	}
}

// ReconcileAt asks for a full pass at until (the end of a settle period
// for which steps were held). Of several such requests the latest wins.
func (l *Loop[E, K, V]) ReconcileAt(until time.Time) {
	l.holdMu.Lock()
	defer l.holdMu.Unlock()
	if !until.After(l.holdUntil) {
		return
	}
	l.holdUntil = until
	if l.holdTimer != nil {
		l.holdTimer.Stop()
	}
	// A little after the end, so that the policy is settled by then.
	l.holdTimer = time.AfterFunc(time.Until(until)+50*time.Millisecond, func() { l.request("settled") })
}

// Add queues work on one object (follow-up work an adapter finds, such as
// an image to judge again once the container that used it is gone).
func (l *Loop[E, K, V]) Add(key K, v V) { l.queue.Add(key, v) }

// Idle is closed once no work is queued or in progress (tests).
func (l *Loop[E, K, V]) Idle() <-chan struct{} { return l.queue.Idle() }

// FirstPass is closed once the first attempt to reach the runtime is over:
// everything was reconciled, or the runtime could not be reached (the loop
// keeps trying). A daemon declares itself ready then, without waiting for
// a runtime that starts after it.
func (l *Loop[E, K, V]) FirstPass() <-chan struct{} { return l.first }

func (l *Loop[E, K, V]) firstDone() { l.firstOnce.Do(func() { close(l.first) }) }

// Stalled reports whether the runtime is connected but its event loop has
// made no progress for longer than limit: the guard is wedged, and the
// systemd watchdog should no longer be fed.
func (l *Loop[E, K, V]) Stalled(now time.Time, limit time.Duration) bool {
	if !l.connected.Load() {
		return false
	}
	return now.Sub(time.Unix(0, l.progress.Load())) > limit
}

// Run guards until ctx is done and returns nil then. It never gives up on
// the runtime.
func (l *Loop[E, K, V]) Run(ctx context.Context) error {
	defer l.firstDone()
	wctx, stopWorkers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range l.cfg.Workers {
		wg.Go(func() { l.work(wctx) })
	}
	defer func() {
		stopWorkers()
		wg.Wait()
		l.holdMu.Lock()
		if l.holdTimer != nil {
			l.holdTimer.Stop()
		}
		l.holdMu.Unlock()
	}()

	delay := l.cfg.MinBackoff
	down := false // an outage has been logged
	attempt := 0
	for {
		began := time.Now()
		err := l.session(ctx, attempt == 0, &down)
		attempt++
		if l.connected.Swap(false) {
			l.cfg.Observer.Connected(l.cfg.Runtime, false)
		}
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(began) >= l.cfg.MaxBackoff {
			delay = l.cfg.MinBackoff // the connection held: start over
		}
		fields := logrus.Fields{"error": err, "retry_in": delay.String()}
		if !down {
			fields[enforcer.FieldMessageID] = enforcer.MessageIDRuntimeDisconnected
			fields[enforcer.FieldRuntime] = l.cfg.Runtime
			l.cfg.Log.WithFields(fields).Warnf("%s: disconnected or unreachable; retrying, and reconciling once it is back", l.cfg.Runtime)
			down = true
		} else {
			l.cfg.Log.WithFields(fields).Debugf("%s: still unreachable", l.cfg.Runtime)
		}
		l.firstDone() // after the outage is logged: a daemon reports it before READY
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, l.cfg.MaxBackoff)
	}
}

var errStreamEnded = errors.New("event stream ended")

// session is one connection: connect, subscribe, reconcile, then follow the
// events until the stream fails (its error is returned) or ctx is done.
func (l *Loop[E, K, V]) session(ctx context.Context, first bool, down *bool) error {
	timeout := connectTimeout
	if first {
		timeout = firstConnectTimeout
	}
	cctx, cancelConnect := context.WithTimeout(ctx, timeout)
	detail, err := l.rt.Connect(cctx)
	cancelConnect()
	if err != nil {
		return err
	}

	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	// Subscribe before listing, so that nothing falls between the two.
	began := time.Now()
	events, errs := l.rt.Subscribe(sctx, l.since())
	streamErr := make(chan error, 1)
	l.progress.Store(time.Now().UnixNano())
	l.connected.Store(true)
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	wg.Go(func() { streamErr <- l.read(sctx, began, tick.C, events, errs) })

	*down = false
	l.cfg.Observer.Connected(l.cfg.Runtime, true)
	l.cfg.Log.WithFields(logrus.Fields{"detail": detail,
		enforcer.FieldMessageID: enforcer.MessageIDRuntimeConnected, enforcer.FieldRuntime: l.cfg.Runtime}).
		Infof("%s: connected; reconciling, then following events", l.cfg.Runtime)

	select { // this connection reconciles anyway
	case <-l.reconcileReq:
	default:
	}
	var retry *time.Timer
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	retryC := func() <-chan time.Time {
		if retry == nil {
			return nil
		}
		return retry.C
	}
	delay := l.cfg.MinBackoff
	reconcile := func(why string) {
		if retry != nil {
			retry.Stop()
			retry = nil
		}
		start := time.Now()
		l.reconcileStart.Store(start.UnixNano())
		err := l.rt.Reconcile(sctx, why)
		l.cfg.Observer.Reconciled(l.cfg.Runtime, why, time.Since(start), err)
		if err != nil && sctx.Err() == nil {
			l.cfg.Log.WithFields(logrus.Fields{"error": err, "retry_in": delay.String(), "trigger": why}).
				Warnf("%s: reconcile failed", l.cfg.Runtime)
			retry = time.NewTimer(delay)
			delay = min(2*delay, l.cfg.MaxBackoff)
			return
		}
		delay = l.cfg.MinBackoff
	}
	reconcile("connect")
	l.firstDone()

	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-streamErr:
			return err
		case why := <-l.reconcileReq:
			reconcile(why)
		case <-retryC():
			retry = nil
			reconcile("retry")
		}
	}
}

// since is where a new event stream starts: after the newest event read.
func (l *Loop[E, K, V]) since() time.Time {
	if n := l.lastEvent.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// read moves events to the queue and does nothing else, so the stream
// never waits for the guard's work. It also notices when the guard fell
// behind: an event read long after it was emitted (since the last
// reconcile began), or a gap in its own clock (the process was stopped or
// starved), means events may have been dropped, and it asks for a
// reconcile at once. ticks is the heartbeat: each tick carries the time it
// fired, so that a stopped process sees the jump when it resumes.
func (l *Loop[E, K, V]) read(ctx context.Context, began time.Time, ticks <-chan time.Time, events <-chan E, errs <-chan error) error {
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err, ok := <-errs:
			if !ok || err == nil {
				err = errStreamEnded
			}
			return err
		case now := <-ticks:
			l.progress.Store(time.Now().UnixNano())
			if clockJumped(last, now, l.cfg.LagLimit) {
				l.behind("the guard's clock jumped " + now.Sub(last).Round(time.Millisecond).String())
			}
			last = now
		case ev, ok := <-events:
			if !ok {
				events = nil // wait for the error
				continue
			}
			l.cfg.Observer.Event(l.cfg.Runtime)
			at, jobs := l.rt.Jobs(ev)
			if !at.IsZero() {
				n := at.UnixNano()
				if n > l.lastEvent.Load() {
					l.lastEvent.Store(n) // only this goroutine writes it
				}
				if lag := time.Since(at); l.cfg.LagLimit > 0 && lag > l.cfg.LagLimit &&
					at.After(began) && n > l.reconcileStart.Load() {
					l.behind("an event was read " + lag.Round(time.Millisecond).String() + " after it happened")
				}
			}
			for _, j := range jobs {
				l.queue.Add(j.Key, j.Value)
			}
		}
	}
}

// clockJumped reports whether two successive heartbeats, at last and now,
// lie further apart than a heartbeat and the lag limit: the process did not
// run in between (SIGSTOP, a frozen cgroup, a starved machine), and events
// may have been dropped meanwhile.
func clockJumped(last, now time.Time, limit time.Duration) bool {
	return limit > 0 && now.Sub(last) > heartbeat+limit
}

func (l *Loop[E, K, V]) behind(why string) {
	l.cfg.Log.WithFields(logrus.Fields{"why": why, enforcer.FieldRuntime: l.cfg.Runtime, enforcer.FieldTrigger: "behind"}).
		Warnf("%s: fell behind the event stream (%s); reconciling now in case events were dropped", l.cfg.Runtime, why)
	l.reconcileStart.Store(time.Now().UnixNano()) // one request for this lag
	l.cfg.Observer.Behind(l.cfg.Runtime, why)
	l.request("behind")
}

func (l *Loop[E, K, V]) work(ctx context.Context) {
	for {
		k, v, ok := l.queue.Get(ctx)
		if !ok {
			return
		}
		l.rt.Handle(ctx, k, v)
		l.queue.Done(k)
	}
}
