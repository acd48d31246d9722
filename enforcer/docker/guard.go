// Package docker keeps a Docker Engine's images and containers inside the
// policy. It is the Docker adapter of the shared guard engine
// (enforcer/internal/engine): it supplies dockerd's event stream, listing,
// inspection and removal; the engine runs the loop, the queue and the
// executor. It follows pull, tag, load, import, commit, container create and
// start, removes disallowed image names and the containers made from
// disallowed images, and reconciles the whole host at start, after every
// reconnect, after a policy reload and whenever events may have been lost.
//
// It never removes an allowed name: it removes names one request a name,
// without force, and Docker only deletes an image with its last name.
package docker

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/locker"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/engine"
)

// Defaults of the options.
const (
	DefaultMinBackoff = engine.DefaultMinBackoff
	DefaultMaxBackoff = engine.DefaultMaxBackoff
	DefaultWorkers    = engine.DefaultWorkers
)

// Guard follows one dockerd and enforces the policy on it.
type Guard struct {
	api      API
	policies enforcer.PolicySource
	log      logrus.FieldLogger
	now      func() time.Time
	cfg      engine.Config

	loop *engine.Loop[Event, jobKey, jobValue]
	exec *engine.Executor
	// locks serializes the work on one image (by ID) and on one container
	// (by ID) between event workers and reconciles.
	locks *locker.Locker

	// imageEvents, when set, is called for every image event read, and
	// with the zero Event before every reconcile.
	imageEvents func(Event)
	// judge answers what names cannot prove about content (signatures,
	// provenance on the containerd image store); nil: nothing is asked.
	judge *evidence.Judge

	// containerdStore: dockerd keeps its images in containerd (load.go).
	containerdStore atomic.Bool
	// untags are the removals waiting for dockerd's untag event.
	untags untagWaiters

	keptMu sync.Mutex
	// kept are the disallowed containers left in place and already
	// reported: by the last reconcile under running: keep, or by audit
	// mode. Their start events (restart policies, a dockerd restart, a
	// crash loop) are left alone, without another record.
	kept map[string]keptContainer
}

// Option configures a Guard.
type Option func(*Guard)

// WithClock sets the clock decisions and records use.
func WithClock(now func() time.Time) Option { return func(g *Guard) { g.now = now } }

// WithBackoff bounds the wait between reconnection attempts; it doubles from
// min up to max.
func WithBackoff(min, max time.Duration) Option {
	return func(g *Guard) { g.cfg.MinBackoff, g.cfg.MaxBackoff = min, max }
}

// WithWorkers sets how many objects are worked on in parallel.
func WithWorkers(n int) Option { return func(g *Guard) { g.cfg.Workers = n } }

// WithObserver has the guard tell o about reconciles, connections and lag.
func WithObserver(o enforcer.Observer) Option { return func(g *Guard) { g.cfg.Observer = o } }

// WithImageEvents has the guard call f for every image event it reads,
// and with the zero Event before every reconcile (events may have been
// missed): the authorization plugin keeps its image index true with them.
func WithImageEvents(f func(Event)) Option { return func(g *Guard) { g.imageEvents = f } }

// pass is the evidence for one pass (a reconcile, one event).
func (g *Guard) pass(ctx context.Context) *evidence.Pass { return g.judge.Pass(ctx) }

// New makes a Guard. It does nothing until Run.
func New(api API, policies enforcer.PolicySource, rep enforcer.Reporter, log logrus.FieldLogger, opts ...Option) *Guard {
	g := &Guard{
		api: api, policies: policies, log: log, now: time.Now,
		cfg:   engine.Config{Runtime: enforcer.RuntimeDocker, Log: log},
		locks: locker.New(),
		kept:  map[string]keptContainer{},
	}
	for _, o := range opts {
		o(g)
	}
	g.loop = engine.New(adapter{g}, g.cfg, mergeJobs)
	g.exec = &engine.Executor{Runtime: enforcer.RuntimeDocker, Policies: policies, Reporter: rep, Now: g.now, Hold: g.loop.ReconcileAt}
	return g
}

// Run follows dockerd until ctx is done, reconnecting whenever it goes away,
// and returns nil then. It never gives up on dockerd.
func (g *Guard) Run(ctx context.Context) error { return g.loop.Run(ctx) }

// RequestReconcile asks for a full pass over the host, e.g. after a policy
// reload. It never blocks; requests made while one is pending are one.
func (g *Guard) RequestReconcile() { g.loop.RequestReconcile() }

// FirstPass is closed once the first attempt to reach dockerd has finished.
func (g *Guard) FirstPass() <-chan struct{} { return g.loop.FirstPass() }

// Stalled reports whether dockerd is connected but the guard's event loop
// has made no progress for longer than limit.
func (g *Guard) Stalled(now time.Time, limit time.Duration) bool { return g.loop.Stalled(now, limit) }

// adapter is what the engine needs of Docker.
type adapter struct{ g *Guard }

var _ engine.Runtime[Event, jobKey, jobValue] = adapter{}

func (a adapter) Connect(ctx context.Context) (string, error) {
	v, err := a.g.api.Ping(ctx)
	if err != nil {
		return "", err
	}
	a.g.checkImageStore(ctx) // load.go
	return "API " + v, nil
}

func (a adapter) Subscribe(ctx context.Context, since time.Time) (<-chan Event, <-chan error) {
	return a.g.api.Events(ctx, since)
}

func (a adapter) Jobs(ev Event) (time.Time, []engine.Job[jobKey, jobValue]) {
	if ev.Type == typeImage && a.g.imageEvents != nil {
		a.g.imageEvents(ev)
	}
	if ev.Type == typeImage && ev.Action == actionUntag {
		a.g.untags.heard(ev.Attributes["name"], ev.ID)
	}
	return ev.Time, jobsFor(ev)
}

func (a adapter) Reconcile(ctx context.Context, why string) error {
	if a.g.imageEvents != nil {
		a.g.imageEvents(Event{})
	}
	return a.g.reconcile(ctx, why)
}

func (a adapter) Handle(ctx context.Context, k jobKey, v jobValue) { a.g.handle(ctx, k, v) }

// jobKind is what a queued job does.
type jobKind int

const (
	// jobImageName judges the image one name (a pull's) points at.
	jobImageName jobKind = iota
	// jobImageID judges an image's names: all of them, or those events put on it.
	jobImageID
	// jobContainer judges a created or started container.
	jobContainer
	// jobContainerGone forgets a destroyed container.
	jobContainerGone
	// jobRepository judges every image of a repository: `docker pull -a`
	// sends one pull event naming the repository alone.
	jobRepository
	// jobPlugin judges the plugin of that local name (plugins.go).
	jobPlugin
)

// jobKey is the object a job is about: two events about one object merge.
type jobKey struct {
	kind jobKind
	// ref is an image name (jobImageName, jobRepository), an image ID
	// (jobImageID) or a container ID.
	ref string
}

// jobValue is what the events about one object asked.
type jobValue struct {
	event string // the first event's action, for records
	// names, for jobImageID, are the names tag events put on the image:
	// only they are removed (the rest is the reconcile's). nil: all names.
	names []string
}

type job = engine.Job[jobKey, jobValue]

// mergeJobs merges the events about one object that arrive while it waits:
// a burst of tags on one image is one pass over the image.
func mergeJobs(old, new jobValue) jobValue {
	if old.names == nil || new.names == nil {
		old.names = nil
		return old
	}
	for _, n := range new.names {
		if !slices.Contains(old.names, n) {
			old.names = append(old.names, n)
		}
	}
	return old
}

// jobsFor turns an event into the work it calls for.
func jobsFor(ev Event) []job {
	switch ev.Type {
	case typeImage:
		switch ev.Action {
		case actionPull:
			// The actor is the reference pulled, by tag or by digest, or
			// the bare repository when every tag was pulled.
			if isRepositoryOnly(ev.ID) {
				return []job{{Key: jobKey{jobRepository, ev.ID}, Value: jobValue{event: ev.Action}}}
			}
			return []job{imageJob(ev.Action, ev.ID)}
		case actionTag:
			// The actor is the image ID; the new name is an attribute.
			if name := ev.Attributes["name"]; name != "" && looksLikeID(ev.ID) {
				return []job{{Key: jobKey{jobImageID, fullID(ev.ID)}, Value: jobValue{event: ev.Action, names: []string{name}}}}
			}
			if name := ev.Attributes["name"]; name != "" {
				return []job{imageJob(ev.Action, name)}
			}
			return []job{imageJob(ev.Action, ev.ID)}
		case actionLoad, actionImport, actionCommit:
			// Tag events for the names came first; the image as a whole
			// is judged again in case one was missed.
			return []job{imageJob(ev.Action, ev.ID)}
		}
	case typePlugin:
		return pluginJob(ev)
	case typeContainer:
		switch ev.Action {
		case actionCreate, actionStart:
			return []job{{Key: jobKey{jobContainer, ev.ID}, Value: jobValue{event: ev.Action}}}
		case actionDestroy:
			return []job{{Key: jobKey{jobContainerGone, ev.ID}, Value: jobValue{event: ev.Action}}}
		case actionCommit:
			if id := ev.Attributes["imageID"]; id != "" {
				return []job{imageJob(ev.Action, id)}
			}
		}
	}
	return nil
}

// isRepositoryOnly reports whether s names a repository without a tag or
// digest (what a pull of all tags reports), as opposed to an image ID.
func isRepositoryOnly(s string) bool {
	if looksLikeID(s) {
		return false
	}
	named, err := reference.ParseNormalizedNamed(s)
	return err == nil && reference.IsNameOnly(named)
}

// imageJob judges an event's image: the one name, or, for an ID, all names.
func imageJob(event, s string) job {
	if looksLikeID(s) {
		return job{Key: jobKey{jobImageID, fullID(s)}, Value: jobValue{event: event}}
	}
	return job{Key: jobKey{jobImageName, s}, Value: jobValue{event: event}}
}
