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
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/locker"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/engine"
	"github.com/pullguard/pullguard/policy"
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

func (g *Guard) handle(ctx context.Context, k jobKey, v jobValue) {
	p := g.policies.Current()
	if p == nil {
		g.log.WithFields(logrus.Fields{"event": v.event, "ref": k.ref}).Error("no policy in force; event not judged")
		return
	}
	switch k.kind {
	case jobRepository:
		g.handleRepository(ctx, p, k.ref, v.event)
	case jobImageName:
		g.handleImageName(ctx, p, k.ref, v.event)
	case jobImageID:
		if v.event == actionLoad {
			g.movedNames(ctx, p, k.ref) // load.go
		}
		names := v.names
		if names != nil {
			if names = g.removeDeniedNamesOf(ctx, p, k.ref, v.event, names); len(names) == 0 {
				return
			}
		}
		g.enforceImage(ctx, p, v.event, k.ref, names, nil)
	case jobContainer:
		g.handleContainer(ctx, p, k.ref, v.event)
	case jobPlugin:
		if err := g.enforcePlugins(ctx, p, v.event, k.ref); err != nil {
			g.log.WithFields(logrus.Fields{"event": v.event, "plugin": k.ref, "error": err}).
				Error("cannot list plugins; the next reconcile judges them")
		}
	case jobContainerGone:
		g.keptMu.Lock()
		kc, was := g.kept[k.ref]
		delete(g.kept, k.ref)
		g.keptMu.Unlock()
		if was && kc.recheck {
			// Its image was left alone while the container used it.
			g.enforceImage(ctx, p, v.event, kc.imageID, nil, nil)
		}
	}
}

// handleImageName acts on the one name an event put on an image.
func (g *Guard) handleImageName(ctx context.Context, p *policy.Policy, name, event string) {
	if d, ok := p.DeniedWhateverContent(name, g.now()); ok {
		g.removeDeniedName(ctx, p, name, event, d)
		return
	}
	// Even a name the policy allows on its own is looked at with the
	// image: a deny rule may list the digest it was pulled as.
	img, err := g.api.InspectImage(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound):
		return // already gone
	case err != nil:
		g.exec.Execute(ctx, engine.Step{Policy: p, Record: enforcer.Record{
			Action: enforcer.Failed, Event: event, Decision: p.Decide(name, g.now()), Err: err}})
		return
	}
	g.enforceImage(ctx, p, event, img.ID, []string{name}, nil)
}

// removeDeniedName removes a name the policy denies outright without
// planning over its image: neither the content it names nor the image's
// other names can change the decision, and removing it cannot take an
// allowed name along (policy.DeniedWhateverContent). An inspection by name and another
// under the image's lock would cost two round trips more, each longer than
// the removal itself on Docker 29's containerd image store. Docker itself
// keeps the name if a container uses the image (ErrInUse), and removes only
// the name when the image keeps others. Nor need it check that the name
// still names the image it named when the event came: were it moved
// meanwhile, the record would name the image it left.
//
// What remains is the image ID the record carries, found so that the
// removal does not wait for it: on dockerd's own image store by a lookup
// sent just before the removal, on the containerd image store (where even
// that lookup costs more than the removal) by dockerd's untag event for the
// name after it, read back from the events dockerd keeps should the stream
// bring it late.
func (g *Guard) removeDeniedName(ctx context.Context, p *policy.Policy, name, event string, d policy.Decision) {
	step := g.deniedNameStep(p, name, event, d)
	switch {
	case p.Mode != policy.ModeEnforce:
		// Nothing is removed: the ID is looked up for the record.
		id, err := g.api.ImageIDOf(ctx, name)
		switch {
		case errors.Is(err, ErrNotFound):
			return // already gone
		case err != nil:
			step.Record.Action, step.Record.Err = enforcer.Failed, err
		}
		step.Record.ImageID = id
	case g.containerdStore.Load():
		heard := g.untags.await(name)
		defer g.untags.forget(name, heard)
		var sent time.Time
		step.Do = func(ctx context.Context) (enforcer.Action, error) {
			sent = time.Now()
			return g.removeName(ctx, "", name, event, false)
		}
		step.Complete = func(rec *enforcer.Record) {
			select {
			case rec.ImageID = <-heard:
				return
			case <-time.After(untagWait):
			}
			// The event stream is late (the guard or dockerd starved):
			// dockerd logged the event while it served the removal, so
			// the events it keeps have it.
			if rec.ImageID = g.api.UntaggedBetween(ctx, name, sent, time.Now()); rec.ImageID == "" {
				g.log.WithFields(logrus.Fields{"event": event, "name": name}).
					Warn("no untag event for a removed name: its record carries no image ID")
			}
		}
	default:
		// dockerd's own image store, whose untag event names the image
		// and not the name.
		var id string
		step.Do = func(ctx context.Context) (enforcer.Action, error) {
			var deleted bool
			var err error
			id, deleted, err = g.api.RemoveImageNameOf(ctx, name)
			return g.removalOutcome(id, name, event, deleted, err)
		}
		step.Complete = func(rec *enforcer.Record) { rec.ImageID = id }
	}
	g.exec.Execute(ctx, step)
}

// deniedNameStep is the step that removes a name the policy denies
// outright (removeDeniedName); the caller says how (Do) and which image
// the record names.
func (g *Guard) deniedNameStep(p *policy.Policy, name, event string, d policy.Decision) engine.Step {
	return engine.Step{Policy: p,
		Record: enforcer.Record{Action: enforcer.Untagged, Event: event, Image: normalize(name), Decision: d},
		AllowedBy: func(prev *policy.Policy) bool {
			if _, ok := prev.DeniedWhateverContent(name, g.now()); ok {
				return false
			}
			// Only while a reload settles: plan as the previous policy would.
			ctx := context.Background()
			img, err := g.api.InspectImage(ctx, name)
			return err != nil || planImage(img, prev, g.now(), []string{name}, g.pass(ctx).Signatures()).Removals == nil
		},
	}
}

// removeDeniedNamesOf removes, side by side, the names tag events put on
// image id that the policy denies outright, as removeDeniedName does a
// pulled one: without inspecting the image again for each batch of tags,
// which costs dockerd time that grows with the names the image has (after
// lost events, dockerd delivers the tag events it kept in batches while
// the first are removed). The event says the image. It returns the names
// left to plan over the image.
func (g *Guard) removeDeniedNamesOf(ctx context.Context, p *policy.Policy, id, event string, names []string) []string {
	var rest []string
	var steps []engine.Step
	for _, name := range names {
		d, ok := p.DeniedWhateverContent(name, g.now())
		if !ok {
			rest = append(rest, name)
			continue
		}
		st := g.deniedNameStep(p, name, event, d)
		st.Record.ImageID = id
		st.Do = func(ctx context.Context) (enforcer.Action, error) {
			return g.removeName(ctx, id, name, event, false)
		}
		steps = append(steps, st)
	}
	if len(steps) > 0 {
		g.locks.Lock("i" + id)
		defer g.locks.Unlock("i" + id)
		g.executeSideBySide(ctx, steps)
	}
	return rest
}

// untagWait bounds the wait for dockerd's untag event after a removal; it
// arrives within milliseconds unless dockerd or the guard is starved.
const untagWait = 2 * time.Second

// untagWaiters hands the image ID in dockerd's untag event for a name to
// the removal of that name waiting for it.
type untagWaiters struct {
	mu sync.Mutex
	m  map[string]chan string
}

func (u *untagWaiters) await(name string) chan string {
	c := make(chan string, 1)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[string]chan string{}
	}
	u.m[normalize(name)] = c
	return c
}

func (u *untagWaiters) forget(name string, c chan string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if n := normalize(name); u.m[n] == c {
		delete(u.m, n)
	}
}

// heard is told of every untag event: on the containerd image store its
// name attribute is the name removed (dockerd 20.10 puts the ID there).
func (u *untagWaiters) heard(name, id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.m) == 0 {
		return // most untag events: a reconcile's, the user's
	}
	n := normalize(name)
	if c, ok := u.m[n]; ok {
		delete(u.m, n)
		c <- id
	}
}

// handleRepository judges every image with a name in the repository a
// pull of all tags brought: which images it brought is not in the event.
func (g *Guard) handleRepository(ctx context.Context, p *policy.Policy, ref, event string) {
	repo := normalize(ref)
	if r, err := policy.ParseRef(ref); err == nil {
		repo = r.Name
	}
	imgs, err := g.api.ListImages(ctx)
	if err != nil {
		g.log.WithFields(logrus.Fields{"event": event, "repository": repo, "error": err}).
			Error("cannot list images after a pull of all tags; the next reconcile judges them")
		return
	}
	for _, img := range imgs {
		for _, n := range namesOf(p, img) {
			if n.repo == repo {
				g.enforceImage(ctx, p, event, img.ID, nil, nil)
				break
			}
		}
	}
}

// enforceImage brings one image in line: the given names only, or all its
// names. The image is inspected again under its lock, so that concurrent
// work on it cannot make the plan stale. usedBy are containers known to
// stay and use the image (reconcile). It returns false when a reload made
// the plan stale.
func (g *Guard) enforceImage(ctx context.Context, p *policy.Policy, event, id string, only []string, usedBy []string) bool {
	g.locks.Lock("i" + id)
	defer g.locks.Unlock("i" + id)
	img, err := g.api.InspectImage(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return true
	case err != nil:
		g.log.WithFields(logrus.Fields{"event": event, "image_id": id, "error": err}).Error("cannot inspect image")
		return true
	}
	ps := g.pass(ctx)
	sigs := ps.Signatures()
	plan := vouch(ps, p, g.now(), img).plan(p, g.now(), only, sigs)
	if u := plan.Unverifiable; u != nil {
		g.exec.Execute(ctx, engine.Step{Policy: p, Record: enforcer.Record{Action: enforcer.Failed, Event: event,
			Image: normalize(u.Name), ImageID: img.ID, Decision: u.Decision, Err: enforcer.ErrSignatureUnverifiable}})
		return true
	}
	steps := g.imageSteps(plan, p, event, usedBy, sigs)
	if len(steps) == 1 {
		return g.exec.Execute(ctx, steps[0]) != engine.Stale
	}
	// Many names (a burst of tags, a reconcile after events were lost):
	// removed one request a name, side by side, as many at once as there
	// are workers; more at once buys little (integration/untag_bench_test.go:
	// 1,500 names go about 1.5 to 2 times as fast 4 at a time as one at a
	// time, and no faster 8 or 16 at a time). dockerd's cost per request
	// grows with the names the image has (20.10 sorts them all, twice, and
	// rewrites and fsyncs its whole reference file; Docker 29 lists every
	// image record in containerd and parses each of the image's names), so
	// a name of an image with many takes milliseconds of dockerd's CPU.
	//
	// One request does remove every name of an image, DELETE /images/ID
	// with force, and on 20.10 it is about four times as fast, though
	// hardly on Docker 29. It cannot serve an image that keeps an allowed name,
	// and is not used for one that keeps none either: it removes the names
	// the image has when dockerd runs it, and a pull of an allowed
	// reference of the same content, or (with local-images: allow) a tag
	// of an allowed name, in the meantime is an allowed name that would go
	// with it, and the image with it; force also deletes an image a
	// stopped container created meanwhile uses, which without force keeps
	// its last name. One request a name leaves both alone.
	//
	// The removal of the image's last name, which deletes the image, goes
	// alone after the others: asked to remove an image's last two names
	// side by side, dockerd 20.10 has both requests untag and then both
	// delete the image, and the second fails ("unrecognized image ID")
	// though its name is gone, a failure in the journal for a name removed.
	var first, last []engine.Step
	for _, st := range steps {
		if st.Do != nil && st.Record.Action == enforcer.Removed {
			last = append(last, st)
		} else {
			first = append(first, st)
		}
	}
	return g.executeSideBySide(ctx, first) && g.executeSideBySide(ctx, last)
}

// executeSideBySide carries steps out, as many at once as there are
// workers. It returns false when a reload made the plan stale; the steps
// left then are not carried out (the reload's reconcile plans again).
func (g *Guard) executeSideBySide(ctx context.Context, steps []engine.Step) bool {
	var stale atomic.Bool
	var group errgroup.Group
	group.SetLimit(g.loop.Workers())
	for _, st := range steps {
		if stale.Load() {
			break
		}
		group.Go(func() error {
			if !stale.Load() && g.exec.Execute(ctx, st) == engine.Stale {
				stale.Store(true)
			}
			return nil
		})
	}
	_ = group.Wait() // the steps report their own failures
	return !stale.Load()
}

// imageSteps turns an image's plan into the executor's steps.
func (g *Guard) imageSteps(plan imagePlan, p *policy.Policy, event string, usedBy []string, sigs policy.SignatureSource) []engine.Step {
	img := plan.Image
	var steps []engine.Step
	for _, u := range plan.Unknown {
		// No definite answer: the name stays until the registry gives one.
		steps = append(steps, engine.Step{Policy: p, Record: enforcer.Record{Action: enforcer.Failed, Event: event,
			Image: normalize(u.Name), ImageID: img.ID, Decision: u.Decision, Err: plan.UnknownErr}})
	}
	if plan.Empties && len(usedBy) > 0 {
		// Docker keeps an image's last name while a container uses it;
		// the container's own record says why it stays.
		for _, r := range plan.Removals {
			steps = append(steps, engine.Step{Policy: p, Record: enforcer.Record{
				Action: enforcer.Reported, Event: event, ImageID: img.ID, ContainerID: usedBy[0], Decision: r.Decision}})
		}
		return steps
	}
	// A name the policy denies whatever content it names (no allow rule
	// pins digests, and the bare name is denied) need not be checked
	// against the image again before it is removed: if it moved to other
	// content meanwhile, that content may not have it either.
	for _, r := range plan.Removals {
		rec := enforcer.Record{Action: enforcer.Untagged, Event: event, Image: normalize(r.Name), ImageID: img.ID, Decision: r.Decision}
		if r.Last {
			rec.Action = enforcer.Removed
		}
		if r.Blocked != nil {
			rec.Action, rec.Err = enforcer.Failed, r.Blocked
			steps = append(steps, engine.Step{Policy: p, Record: rec})
			continue
		}
		name := r.Name
		check := p.PinsDigests() || p.Decide(name, g.now()).Allowed
		steps = append(steps, engine.Step{Policy: p, Record: rec,
			Do: func(ctx context.Context) (enforcer.Action, error) {
				return g.removeName(ctx, img.ID, name, event, check)
			},
			AllowedBy: func(prev *policy.Policy) bool {
				// img has the names its provenance was vouched for
				// with now (provenance.go); the previous policy judges
				// those.
				return planImage(img, prev, g.now(), []string{name}, sigs).Removals == nil
			},
		})
	}
	return steps
}

// removeName removes one name of image id; with check, only if it still
// points there.
func (g *Guard) removeName(ctx context.Context, id, name, event string, check bool) (enforcer.Action, error) {
	// Docker removes whatever the name points to now. A pull may have
	// moved it to another image since the plan was made; that image's own
	// event judges it.
	if check {
		if cur, err := g.api.InspectImage(ctx, name); err != nil || cur.ID != id {
			return "", engine.ErrNotNow
		}
	}
	deleted, err := g.api.RemoveImageName(ctx, name)
	return g.removalOutcome(id, name, event, deleted, err)
}

// removalOutcome maps what removing a name of image id came to for the
// executor.
func (g *Guard) removalOutcome(id, name, event string, deleted bool, err error) (enforcer.Action, error) {
	switch {
	case errors.Is(err, ErrNotFound):
		return "", engine.ErrGone // someone else was faster
	case errors.Is(err, ErrInUse):
		// A container was created from it meanwhile; judging that
		// container queues this image again once it is gone.
		g.log.WithFields(logrus.Fields{"event": event, "image_id": id, "name": name}).
			Info("disallowed name kept for now: a container uses the image")
		return "", engine.ErrNotNow
	case err != nil:
		return "", err
	case deleted:
		return enforcer.Removed, nil
	}
	return enforcer.Untagged, nil
}

// handleContainer removes a container created or started from an image
// the policy does not allow.
func (g *Guard) handleContainer(ctx context.Context, p *policy.Policy, id, event string) {
	g.locks.Lock("c" + id)
	defer g.locks.Unlock("c" + id)
	if g.isKept(id) {
		return // reported already, and left in place
	}
	c, err := g.api.InspectContainer(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return
	case err != nil:
		g.log.WithFields(logrus.Fields{"event": event, "container_id": id, "error": err}).Error("cannot inspect container")
		return
	}
	if c.State == "removing" {
		return
	}
	ps := g.pass(ctx)
	sigs := ps.Signatures()
	img, err := imageOf(ctx, g.api, c.ImageID, map[string]*vouched{}, vouchFor(ps, p, g.now()))
	if err != nil {
		g.log.WithFields(logrus.Fields{"event": event, "container_id": c.ID, "error": err}).Error("cannot inspect the container's image")
		return
	}
	v := judgeVouched(c.Image, c.ImageID, img, p, g.now(), sigs)
	if v.Allowed {
		return
	}
	rec := enforcer.Record{Action: enforcer.Removed, Event: event, ContainerID: c.ID, ImageID: c.ImageID, Decision: v.Decision}
	if v.Unverifiable {
		rec.Action, rec.Err = enforcer.Failed, enforcer.ErrSignatureUnverifiable
		g.exec.Execute(ctx, engine.Step{Policy: p, Record: rec})
		return
	}
	if p.Mode != policy.ModeEnforce {
		g.keptMu.Lock()
		g.kept[c.ID] = keptContainer{imageID: c.ImageID}
		g.keptMu.Unlock()
	}
	out := g.exec.Execute(ctx, engine.Step{Policy: p, Record: rec,
		// Force: a start may have raced this removal.
		Do: func(ctx context.Context) (enforcer.Action, error) {
			if err := g.api.RemoveContainer(ctx, c.ID); errors.Is(err, ErrNotFound) {
				return "", engine.ErrGone
			} else if err != nil {
				return "", err
			}
			return enforcer.Removed, nil
		},
		AllowedBy: func(prev *policy.Policy) bool {
			return judgeVouched(c.Image, c.ImageID, img, prev, g.now(), sigs).Allowed
		},
	})
	if out == engine.Reported && p.Mode == policy.ModeEnforce && c.ImageID != "" {
		// The image's disallowed names may have stayed because this
		// container used it.
		g.loop.Add(jobKey{jobImageID, c.ImageID}, jobValue{event: event})
	}
}

// keptContainer is a disallowed container left in place.
type keptContainer struct {
	imageID string
	// recheck: its image's names were left because it used the image, and
	// are judged again once it is gone.
	recheck bool
}

func (g *Guard) isKept(id string) bool {
	g.keptMu.Lock()
	defer g.keptMu.Unlock()
	_, ok := g.kept[id]
	return ok
}

// Reconcile brings the whole host in line with the policy in force once,
// synchronously: what `pullguard scan --enforce` does.
func (g *Guard) Reconcile(ctx context.Context) error { return g.reconcile(ctx, "scan") }

// reconcile brings the whole host in line with the policy in force: the
// survey plans, the executor acts.
func (g *Guard) reconcile(ctx context.Context, why string) error {
	p := g.policies.Current()
	if p == nil {
		return errors.New("no policy in force")
	}
	began := time.Now()
	ps := g.pass(ctx) // a registry that did not answer is asked once a pass
	s, err := takeSurvey(ctx, g.api, p, g.now(), ps.Signatures(), vouchFor(ps, p, g.now()))
	if err != nil {
		return err
	}
	kept := map[string]keptContainer{}
	// Containers in parallel: a stop waits out each container's stop
	// timeout (10 s by default), and there may be many of them.
	var group errgroup.Group
	group.SetLimit(g.loop.Workers())
	for _, st := range s.Containers {
		if st.Action == enforcer.Reported || p.Mode != policy.ModeEnforce {
			kept[st.Container.ID] = keptContainer{imageID: st.Container.ImageID, recheck: p.Mode == policy.ModeEnforce}
		}
		group.Go(func() error {
			g.locks.Lock("c" + st.Container.ID)
			defer g.locks.Unlock("c" + st.Container.ID)
			g.exec.Execute(ctx, g.containerStep(p, st))
			return nil
		})
	}
	_ = group.Wait()
	g.keptMu.Lock()
	g.kept = kept
	g.keptMu.Unlock()
	for _, st := range s.Images {
		if g.policies.Current() != p || !g.enforceImage(ctx, p, eventReconcile, st.Plan.Image.ID, nil, st.UsedBy) {
			g.log.WithField("policy_hash", p.Hash).Info("policy reloaded during reconcile; the next reconcile judges under the new one")
			return nil
		}
	}
	if err := g.enforcePlugins(ctx, p, eventReconcile, ""); err != nil {
		return err
	}
	g.log.WithFields(logrus.Fields{
		"trigger": why, "images": s.ImageCount, "containers": s.ContainerCount,
		"disallowed_images": len(s.Images), "disallowed_containers": len(s.Containers),
		"mode": p.Mode, "policy_hash": p.Hash, "duration": time.Since(began).Round(time.Millisecond).String(),
	}).Info("reconciled docker")
	return nil
}

const eventReconcile = "reconcile"

// containerStep is the executor's step for one disallowed container a
// reconcile found.
func (g *Guard) containerStep(p *policy.Policy, st containerStep) engine.Step {
	c := st.Container
	s := engine.Step{Policy: p, Record: enforcer.Record{Action: st.Action, Event: eventReconcile,
		ContainerID: c.ID, ImageID: c.ImageID, Decision: st.Verdict.Decision}}
	if st.Action == enforcer.Reported || st.Action == enforcer.Failed {
		if st.Verdict.Unverifiable {
			s.Record.Err = enforcer.ErrSignatureUnverifiable
		}
		return s
	}
	s.AllowedBy = func(prev *policy.Policy) bool {
		ctx := context.Background()
		ps := g.pass(ctx)
		img, err := imageOf(ctx, g.api, c.ImageID, map[string]*vouched{}, vouchFor(ps, prev, g.now()))
		return err == nil && judgeVouched(c.Image, c.ImageID, img, prev, g.now(), ps.Signatures()).Allowed
	}
	s.Do = func(ctx context.Context) (enforcer.Action, error) {
		if st.Action == enforcer.Stopped {
			switch err := g.api.StopContainer(ctx, c.ID); {
			case errors.Is(err, ErrNotFound):
				return "", engine.ErrGone
			case err != nil:
				return "", err
			}
		}
		switch err := g.api.RemoveContainer(ctx, c.ID); {
		case errors.Is(err, ErrNotFound):
			if st.Action != enforcer.Stopped {
				return "", engine.ErrGone
			}
			// Stopped, then gone by itself (docker run --rm): still our doing.
		case err != nil:
			return "", err
		}
		return st.Action, nil
	}
	return s
}
