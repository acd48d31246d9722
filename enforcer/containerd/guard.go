package containerd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/locker"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/engine"
	"github.com/pullguard/pullguard/policy"
)

// workers is how many objects are acted on at once. Deletions are
// synchronous (containerd collects garbage before answering) and kills wait
// for exits, so a few run side by side; more would only contend in
// containerd's metadata store.
const workers = 4

// Guard enforces the policy on one containerd. It is the containerd
// adapter of the shared guard engine (enforcer/internal/engine).
type Guard struct {
	api      API
	policies enforcer.PolicySource
	log      logrus.FieldLogger
	cfg      engine.Config

	only map[string]bool // nil: every namespace

	now  func() time.Time
	loop *engine.Loop[Event, workKey, string]
	exec *engine.Executor
	// locks serializes the work on one image content (its names are
	// judged together) and on one container, between event workers and
	// reconciles.
	locks *locker.Locker
	// kept holds the containers a reconcile found running a disallowed
	// image and left running (running: keep), by namespace and ID: a
	// restart of their task (restart monitor, nerdctl --restart) is not a
	// new container, and killing it would overrule the policy.
	keptMu sync.Mutex
	kept   map[string]bool
	// judge answers what names cannot prove about content: provenance
	// and signatures (enforcer/evidence); nil: nothing is asked, so
	// signed-by rules deny and, under local-images: deny, allowed names
	// are undecided.
	judge *evidence.Judge
	// owner accounts for what Docker wrote into its namespaces (WithOwner);
	// nil: every namespace is judged alike.
	owner    Owner
	retrying atomic.Bool // reconcileLater has a reconcile coming
	leases   leaseSweep  // images only leases hold (leases.go)

	contentState // what is known of containers' content (content.go)
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

// WithBackoff bounds the wait between attempts to reach containerd.
func WithBackoff(min, max time.Duration) Option {
	return func(g *Guard) { g.cfg.MinBackoff, g.cfg.MaxBackoff = min, max }
}

// WithEvidence has the guard ask j what names cannot prove about content
// (shared with the Docker guard, the authorization plugin and scan).
func WithEvidence(j *evidence.Judge) Option { return func(g *Guard) { g.judge = j } }

// WithObserver has the guard tell o about reconciles, connections and lag.
func WithObserver(o enforcer.Observer) Option { return func(g *Guard) { g.cfg.Observer = o } }

// New makes a guard. It does nothing until Run.
func New(api API, policies enforcer.PolicySource, rep enforcer.Reporter, log logrus.FieldLogger, opts ...Option) *Guard {
	g := &Guard{
		api: api, policies: policies, log: log,
		cfg:   engine.Config{Runtime: enforcer.RuntimeContainerd, Log: log, Workers: workers, MinBackoff: 100 * time.Millisecond},
		now:   time.Now,
		locks: locker.New(),
	}
	g.started = time.Now()
	for _, o := range opts {
		o(g)
	}
	g.loop = engine.New(adapter{g}, g.cfg, nil)
	g.exec = &engine.Executor{Runtime: enforcer.RuntimeContainerd, Policies: policies, Reporter: rep, Now: g.now, Hold: g.loop.ReconcileAt}
	return g
}

// Run guards until ctx is done, then returns nil. It outlives containerd
// restarts: it subscribes again, with a backoff of at most 5 s, and
// reconciles after every reconnect, since events sent while it was away are
// lost.
func (g *Guard) Run(ctx context.Context) error { return g.loop.Run(ctx) }

// RequestReconcile asks for a reconcile of every namespace, as after a
// policy reload. It never blocks; requests made while one is pending are
// one request.
func (g *Guard) RequestReconcile() { g.loop.RequestReconcile() }

// FirstPass is closed once the first attempt to reach containerd has
// finished: everything was reconciled, or containerd was unreachable.
func (g *Guard) FirstPass() <-chan struct{} { return g.loop.FirstPass() }

// Stalled reports whether containerd is connected but the guard's event
// loop has made no progress for longer than limit.
func (g *Guard) Stalled(now time.Time, limit time.Duration) bool { return g.loop.Stalled(now, limit) }

// workKey is one object events named: an image record or a container.
type workKey struct {
	ns          string
	image       string // exactly one of image and containerID is set
	containerID string
}

// adapter is what the engine needs of containerd. Queued values are the
// first event's topic.
type adapter struct{ g *Guard }

var _ engine.Runtime[Event, workKey, string] = adapter{}

// Connect lists the namespaces: containerd has no ping, and the client
// reconnects by itself.
func (a adapter) Connect(ctx context.Context) (string, error) {
	nss, err := a.g.api.Namespaces(ctx)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d namespaces", len(nss)), nil
}

// Subscribe follows every namespace; containerd does not replay events, so
// since is not used (the reconcile covers the gap).
func (a adapter) Subscribe(ctx context.Context, _ time.Time) (<-chan Event, <-chan error) {
	return a.g.api.Subscribe(ctx, topics...)
}

func (a adapter) Jobs(ev Event) (time.Time, []engine.Job[workKey, string]) {
	g := a.g
	if !g.wanted(ev.Namespace) {
		return ev.Time, nil
	}
	switch ev.Topic {
	case TopicImageCreate, TopicImageUpdate:
		if ev.Image != "" {
			return ev.Time, []engine.Job[workKey, string]{{Key: workKey{ns: ev.Namespace, image: ev.Image}, Value: ev.Topic}}
		}
	case TopicContainerCreate, TopicTaskCreate, TopicTaskStart:
		if ev.ContainerID != "" {
			return ev.Time, []engine.Job[workKey, string]{{Key: workKey{ns: ev.Namespace, containerID: ev.ContainerID}, Value: ev.Topic}}
		}
	}
	return ev.Time, nil
}

func (a adapter) Reconcile(ctx context.Context, why string) error { return a.g.reconcile(ctx, why) }

func (a adapter) Handle(ctx context.Context, k workKey, topic string) {
	if a.g.leftToOwner(ctx, k, topic) {
		return
	}
	if k.containerID != "" {
		a.g.containerEvent(ctx, k.ns, k.containerID, topic)
	} else {
		a.g.imageEvent(ctx, k.ns, k.image, topic)
	}
}

func (g *Guard) wanted(ns string) bool {
	return g.only == nil || g.only[ns]
}

// reconcileEvent is Record.Event for what a reconcile finds.
const reconcileEvent = "reconcile"

// reconcile judges every container and image record of every guarded
// namespace. Containers go first: a container is judged through the
// records of the content it runs, which must still exist.
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
	listed := time.Now()
	imgs, err := g.reconcileContainers(ctx, ns, listed)
	if isNotFound(err) {
		return nil // the namespace went away
	}
	if err != nil {
		return err
	}
	// Docker's image records (Docker 29) are the Docker guard's; they
	// still told the containers above which content they run.
	switch g.ownership(ctx, workKey{ns: ns}, listed) {
	case Owned:
		return nil
	case OwnerUnknown:
		g.reconcileLater()
		return nil
	}
	seen := map[string]bool{}
	for _, img := range imgs {
		if seen[img.Target] && img.Target != "" {
			continue
		}
		seen[img.Target] = true
		g.judgeContent(ctx, ns, img, reconcileEvent, "")
	}
	return g.sweepLeases(ctx, ns) // leases.go
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
