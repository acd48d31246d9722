package containerd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// Backoff between attempts to reach containerd, and how long a connection
// must have lasted for the next failure to start over at the shortest delay.
const (
	minBackoff    = 100 * time.Millisecond
	maxBackoff    = 5 * time.Second
	healthyUptime = 10 * time.Second
)

// workers is how many objects are acted on at once. Deletions are
// synchronous (containerd collects garbage before answering) and kills wait
// for exits, so a few run side by side; more would only contend in
// containerd's metadata store.
const workers = 4

// Guard enforces the policy on one containerd.
type Guard struct {
	api      API
	policies enforcer.PolicySource
	rep      enforcer.Reporter
	log      logrus.FieldLogger

	only map[string]bool // nil: every namespace
	skip map[string]bool

	now                    func() time.Time
	minBackoff, maxBackoff time.Duration

	reconcileReq  chan struct{}
	firstPass     chan struct{}
	firstPassOnce sync.Once
	// locks serializes the work on one image content (its names are
	// judged together) and on one container, between event workers and
	// reconciles.
	locks keyedMutex
	// kept holds the containers a reconcile found running a disallowed
	// image and left running (running: keep), by namespace and ID: a
	// restart of their task (restart monitor, nerdctl --restart) is not a
	// new container, and killing it would overrule the policy.
	keptMu sync.Mutex
	kept   map[string]bool
}

// Option configures a Guard.
type Option func(*Guard)

// WithNamespaces limits the guard to the given namespaces. By default it
// guards every namespace, including ones created while it runs.
func WithNamespaces(ns []string) Option {
	return func(g *Guard) {
		g.only = map[string]bool{}
		for _, n := range ns {
			g.only[n] = true
		}
	}
}

// WithSkipNamespaces leaves the given namespaces alone: the daemon passes
// Docker's ("moby", "plugins.moby") when it guards Docker through Docker's
// own API, so that a container is not judged twice.
func WithSkipNamespaces(ns []string) Option {
	return func(g *Guard) {
		for _, n := range ns {
			g.skip[n] = true
		}
	}
}

// New makes a guard. It does nothing until Run.
func New(api API, policies enforcer.PolicySource, rep enforcer.Reporter, log logrus.FieldLogger, opts ...Option) *Guard {
	g := &Guard{
		api:          api,
		policies:     policies,
		rep:          rep,
		log:          log,
		skip:         map[string]bool{},
		now:          time.Now,
		minBackoff:   minBackoff,
		maxBackoff:   maxBackoff,
		reconcileReq: make(chan struct{}, 1),
		firstPass:    make(chan struct{}),
	}
	for _, o := range opts {
		o(g)
	}
	return g
}

// RequestReconcile asks for a reconcile of every namespace, as after a
// policy reload. It never blocks; requests made while one is pending are
// one request.
func (g *Guard) RequestReconcile() {
	select {
	case g.reconcileReq <- struct{}{}:
	default:
	}
}

// FirstPass is closed once the first attempt to reach containerd has
// finished: everything was reconciled, or containerd was unreachable.
func (g *Guard) FirstPass() <-chan struct{} { return g.firstPass }

func (g *Guard) markFirstPass() { g.firstPassOnce.Do(func() { close(g.firstPass) }) }

// Run guards until ctx is done, then returns nil. It outlives containerd
// restarts: it subscribes again, with a backoff of at most 5 s, and
// reconciles after every reconnect, since events sent while it was away are
// lost.
func (g *Guard) Run(ctx context.Context) error {
	q := newQueue()
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.work(ctx, q)
		}()
	}
	defer func() {
		q.close()
		wg.Wait()
		g.markFirstPass()
	}()

	delay := g.minBackoff
	failures := 0
	for {
		start := time.Now()
		connected, err := g.session(ctx, q)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			failures = 0 // a new outage: warn again
		}
		if time.Since(start) >= healthyUptime {
			delay = g.minBackoff
		}
		failures++
		entry := g.log.WithError(err).WithField("retry_in", delay.String())
		if failures == 1 {
			entry.WithFields(logrus.Fields{enforcer.FieldMessageID: enforcer.MessageIDRuntimeDisconnected, enforcer.FieldRuntime: enforcer.RuntimeContainerd}).
				Warn("containerd: lost or could not reach containerd; retrying, and reconciling once it is back")
		} else {
			entry.Debug("containerd: still unreachable")
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(delay*2, g.maxBackoff)
	}
}

// session is one connection: subscribe, reconcile what the subscription
// cannot show (everything that happened before it), then hand events to the
// workers until the stream or a reconcile fails. connected reports whether
// a reconcile succeeded on it.
func (g *Guard) session(ctx context.Context, q *queue) (connected bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Subscribe before reconciling, so that nothing falls between the two.
	events, errs := g.api.Subscribe(sctx, topics...)

	// A request made while disconnected is served by this session's reconcile.
	select {
	case <-g.reconcileReq:
	default:
	}
	done := make(chan error, 1)
	running, pending := false, false
	reconcile := func(reason string) {
		running = true
		go func() {
			err := g.reconcile(sctx, reason)
			g.markFirstPass()
			done <- err
		}()
	}
	defer func() {
		if running {
			cancel()
			<-done
		}
	}()
	reconcile("connect")

	for {
		select {
		case <-ctx.Done():
			return connected, ctx.Err()
		case err := <-errs:
			if err == nil {
				err = errors.New("event stream ended")
			}
			return connected, fmt.Errorf("event stream: %w", err)
		case ev := <-events:
			g.dispatch(ev, q)
		case <-g.reconcileReq:
			if running {
				pending = true
			} else {
				reconcile("request")
			}
		case err := <-done:
			running = false
			if err != nil {
				return connected, fmt.Errorf("reconcile: %w", err)
			}
			if !connected {
				connected = true
				g.log.WithFields(logrus.Fields{enforcer.FieldMessageID: enforcer.MessageIDRuntimeConnected, enforcer.FieldRuntime: enforcer.RuntimeContainerd}).
					Info("containerd: connected; every guarded namespace reconciled, watching events")
			}
			if pending {
				pending = false
				reconcile("request")
			}
		}
	}
}

func (g *Guard) wanted(ns string) bool {
	if g.skip[ns] {
		return false
	}
	return g.only == nil || g.only[ns]
}

// dispatch queues an event's object; it never blocks.
func (g *Guard) dispatch(ev Event, q *queue) {
	if !g.wanted(ev.Namespace) {
		return
	}
	switch ev.Topic {
	case TopicImageCreate, TopicImageUpdate:
		if ev.Image != "" {
			q.add(work{ns: ev.Namespace, topic: ev.Topic, image: ev.Image})
		}
	case TopicContainerCreate, TopicTaskCreate, TopicTaskStart:
		if ev.ContainerID != "" {
			q.add(work{ns: ev.Namespace, topic: ev.Topic, containerID: ev.ContainerID})
		}
	}
}

func (g *Guard) work(ctx context.Context, q *queue) {
	for {
		w, ok := q.get()
		if !ok {
			return
		}
		if w.containerID != "" {
			g.containerEvent(ctx, w.ns, w.containerID, w.topic)
		} else {
			g.imageEvent(ctx, w.ns, w.image, w.topic)
		}
		q.done(w)
	}
}

// reconcileEvent is Record.Event for what a reconcile finds.
const reconcileEvent = "reconcile"

// reconcile judges every container and image record of every guarded
// namespace. Containers go first: a container whose image is named only by
// an image ID is judged through that image's names, which must still exist.
func (g *Guard) reconcile(ctx context.Context, reason string) error {
	start := time.Now()
	nss, err := g.api.Namespaces(ctx)
	if err != nil {
		return fmt.Errorf("listing namespaces: %w", err)
	}
	var errs []error
	checked := 0
	for _, ns := range nss {
		if !g.wanted(ns) {
			continue
		}
		if err := g.reconcileNamespace(ctx, ns); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			errs = append(errs, fmt.Errorf("namespace %s: %w", ns, err))
			continue
		}
		checked++
	}
	g.log.WithFields(logrus.Fields{
		"reason":     reason,
		"namespaces": checked,
		"duration":   time.Since(start).Round(time.Millisecond).String(),
	}).Debug("containerd: reconciled")
	return errors.Join(errs...)
}

func (g *Guard) reconcileNamespace(ctx context.Context, ns string) error {
	cs, err := g.api.Containers(ctx, ns)
	if isNotFound(err) {
		return nil // the namespace went away
	}
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	for _, c := range cs {
		g.checkContainer(ctx, ns, c, reconcileEvent)
	}
	imgs, err := g.api.Images(ctx, ns)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing images: %w", err)
	}
	seen := map[string]bool{}
	for _, img := range imgs {
		if seen[img.Target] && img.Target != "" {
			continue
		}
		seen[img.Target] = true
		g.judgeContent(ctx, ns, img, reconcileEvent, "")
	}
	return nil
}

// policy is the policy in force; nil (none loaded, which the daemon does
// not allow) means act on nothing.
func (g *Guard) policy() *policy.Policy {
	p := g.policies.Current()
	if p == nil {
		g.log.Warn("containerd: no policy in force; acting on nothing")
	}
	return p
}

func (g *Guard) report(r enforcer.Record) {
	r.Runtime = enforcer.RuntimeContainerd
	g.rep.Report(r)
}
