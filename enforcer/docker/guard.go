// Package docker keeps a Docker Engine's images and containers inside the
// policy. It follows dockerd's event stream (pull, tag, load, import, commit,
// container create and start), removes disallowed image names and the
// containers made from disallowed images, and reconciles the whole host at
// start, after every reconnect and after a policy reload, because events
// missed while it was away are not replayed.
//
// It never removes an allowed name: it removes names one at a time, without
// force, and Docker only deletes an image with its last name.
package docker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/reference"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// Defaults of the options.
const (
	DefaultMinBackoff = 250 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
	DefaultWorkers    = 4

	pingTimeout = 10 * time.Second
	// firstPingTimeout bounds the very first ping (see session).
	firstPingTimeout = 2 * time.Second
)

// Guard follows one dockerd and enforces the policy on it.
type Guard struct {
	api      API
	policies enforcer.PolicySource
	rep      enforcer.Reporter
	log      logrus.FieldLogger

	now        func() time.Time
	minBackoff time.Duration
	maxBackoff time.Duration
	workers    int

	queue      *queue
	images     keyedMutex // serializes the work on one image
	containers keyedMutex // and on one container

	reconcileReq chan struct{}
	first        chan struct{}
	firstOnce    sync.Once
	// lastEvent is the time of the newest event read (UnixNano), so that a
	// new stream resumes where the old one broke off.
	lastEvent atomic.Int64

	keptMu sync.Mutex
	// kept are the disallowed containers left in place and already
	// reported: by the last reconcile under running: keep, or by audit
	// mode. Their start events (restart policies, a dockerd restart, a
	// crash loop) are left alone, without another record.
	kept map[string]keptContainer

	// afterReconcile, when set, is called at the end of every reconcile (tests).
	afterReconcile func(error)
}

// Option configures a Guard.
type Option func(*Guard)

// WithClock sets the clock decisions and records use.
func WithClock(now func() time.Time) Option { return func(g *Guard) { g.now = now } }

// WithBackoff bounds the wait between reconnection attempts; it doubles from
// min up to max.
func WithBackoff(min, max time.Duration) Option {
	return func(g *Guard) { g.minBackoff, g.maxBackoff = min, max }
}

// WithWorkers sets how many events are worked on in parallel.
func WithWorkers(n int) Option { return func(g *Guard) { g.workers = n } }

// New makes a Guard. It does nothing until Run.
func New(api API, policies enforcer.PolicySource, rep enforcer.Reporter, log logrus.FieldLogger, opts ...Option) *Guard {
	g := &Guard{
		api: api, policies: policies, rep: rep, log: log,
		now:          time.Now,
		minBackoff:   DefaultMinBackoff,
		maxBackoff:   DefaultMaxBackoff,
		workers:      DefaultWorkers,
		queue:        newQueue(),
		reconcileReq: make(chan struct{}, 1),
		first:        make(chan struct{}),
		kept:         map[string]keptContainer{},
	}
	for _, o := range opts {
		o(g)
	}
	if g.workers < 1 {
		g.workers = 1
	}
	if g.minBackoff <= 0 {
		g.minBackoff = DefaultMinBackoff
	}
	if g.maxBackoff < g.minBackoff {
		g.maxBackoff = g.minBackoff
	}
	return g
}

// RequestReconcile asks for a full pass over the host, e.g. after a policy
// reload. It never blocks; requests made while one is pending are one.
func (g *Guard) RequestReconcile() {
	select {
	case g.reconcileReq <- struct{}{}:
	default:
	}
}

// FirstPass is closed once the first attempt to reach dockerd has finished:
// the host was reconciled, or dockerd could not be reached (the guard keeps
// trying). A daemon can declare itself ready then without waiting for a
// dockerd that starts after it.
func (g *Guard) FirstPass() <-chan struct{} { return g.first }

func (g *Guard) firstDone() { g.firstOnce.Do(func() { close(g.first) }) }

// Run follows dockerd until ctx is done, reconnecting whenever it goes away,
// and returns nil then. It never gives up on dockerd.
func (g *Guard) Run(ctx context.Context) error {
	defer g.firstDone()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range g.workers {
		wg.Go(func() { g.work(ctx) })
	}
	g.follow(ctx)
	cancel()
	wg.Wait()
	return nil
}

// follow connects to dockerd again and again, with capped exponential
// backoff between attempts, until ctx is done.
func (g *Guard) follow(ctx context.Context) {
	delay := g.minBackoff
	down := false // an outage has been logged
	for {
		began := time.Now()
		err := g.session(ctx, &down)
		if ctx.Err() != nil {
			return
		}
		g.firstDone()
		if time.Since(began) >= g.maxBackoff {
			delay = g.minBackoff // the connection held: start over
		}
		if !down {
			g.log.WithFields(logrus.Fields{"error": err, "retry_in": delay.String(),
				enforcer.FieldMessageID: enforcer.MessageIDRuntimeDisconnected, enforcer.FieldRuntime: enforcer.RuntimeDocker}).
				Warn("disconnected from dockerd; reconnecting")
			down = true
		} else {
			g.log.WithFields(logrus.Fields{"error": err, "retry_in": delay.String()}).
				Debug("dockerd still unreachable")
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, g.maxBackoff)
	}
}

var errStreamEnded = errors.New("event stream ended")

// session is one connection: ping, subscribe, reconcile, then follow the
// events until the stream fails (its error is returned) or ctx is done.
func (g *Guard) session(ctx context.Context, down *bool) error {
	// A dockerd that accepts connections but does not answer must not
	// hold the guard forever.
	timeout := pingTimeout
	select {
	case <-g.first:
	default:
		// At boot, systemd holds docker.socket open while docker.service
		// waits for pullguard to be ready (Before=docker.service): a ping
		// then hangs until it times out, and so would pullguard's start.
		// The first attempt gives up quickly; the next ones wait longer.
		timeout = firstPingTimeout
	}
	pctx, cancelPing := context.WithTimeout(ctx, timeout)
	version, err := g.api.Ping(pctx)
	cancelPing()
	if err != nil {
		if !*down {
			g.log.WithFields(logrus.Fields{"error": err,
				enforcer.FieldMessageID: enforcer.MessageIDRuntimeDisconnected, enforcer.FieldRuntime: enforcer.RuntimeDocker}).
				Warn("dockerd unreachable; retrying")
			*down = true
		}
		return err
	}

	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	// Subscribe before listing, so that nothing falls between the two.
	events, errs := g.api.Events(sctx, g.since())
	streamErr := make(chan error, 1)
	wg.Go(func() { streamErr <- g.read(sctx, events, errs) })

	*down = false
	g.log.WithFields(logrus.Fields{"api_version": version,
		enforcer.FieldMessageID: enforcer.MessageIDRuntimeConnected, enforcer.FieldRuntime: enforcer.RuntimeDocker}).
		Info("connected to dockerd")

	select { // this connection reconciles anyway
	case <-g.reconcileReq:
	default:
	}
	var retry *time.Timer
	retryC := func() <-chan time.Time {
		if retry == nil {
			return nil
		}
		return retry.C
	}
	delay := g.minBackoff
	reconcile := func(why string) {
		if retry != nil {
			retry.Stop()
			retry = nil
		}
		if err := g.reconcile(ctx, why); err != nil && ctx.Err() == nil {
			g.log.WithFields(logrus.Fields{"error": err, "retry_in": delay.String()}).Warn("reconcile failed")
			retry = time.NewTimer(delay)
			delay = min(2*delay, g.maxBackoff)
			return
		}
		delay = g.minBackoff
	}
	reconcile("connect")
	g.firstDone()
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()

	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-streamErr:
			return err
		case <-g.reconcileReq:
			reconcile("requested")
		case <-retryC():
			retry = nil
			reconcile("retry")
		}
	}
}

// since is where a new event stream starts: the newest event already read.
// Events are replayed only from dockerd's in-memory buffer, so reconcile
// remains what guarantees nothing is missed.
func (g *Guard) since() time.Time {
	if n := g.lastEvent.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// read moves events from the stream to the queue and does nothing else, so
// the stream never waits for the guard's work.
func (g *Guard) read(ctx context.Context, events <-chan Event, errs <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err, ok := <-errs:
			if !ok || err == nil {
				err = errStreamEnded
			}
			return err
		case ev, ok := <-events:
			if !ok {
				events = nil // wait for the error
				continue
			}
			if t := ev.Time.UnixNano(); !ev.Time.IsZero() && t > g.lastEvent.Load() {
				g.lastEvent.Store(t) // only this goroutine writes it
			}
			for _, j := range jobsFor(ev) {
				g.queue.push(j)
			}
		}
	}
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
				return []job{{kind: jobRepository, event: ev.Action, ref: ev.ID}}
			}
			return []job{imageJob(ev.Action, ev.ID)}
		case actionTag:
			// The actor is the image ID; the new name is an attribute.
			if name := ev.Attributes["name"]; name != "" {
				return []job{{kind: jobImageName, event: ev.Action, ref: name}}
			}
			return []job{imageJob(ev.Action, ev.ID)}
		case actionLoad, actionImport, actionCommit:
			// Tag events for the names came first; the image as a whole
			// is judged again in case one was missed.
			return []job{imageJob(ev.Action, ev.ID)}
		}
	case typeContainer:
		switch ev.Action {
		case actionCreate, actionStart:
			return []job{{kind: jobContainer, event: ev.Action, ref: ev.ID}}
		case actionDestroy:
			return []job{{kind: jobContainerGone, event: ev.Action, ref: ev.ID}}
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
		return job{kind: jobImageID, event: event, ref: fullID(s)}
	}
	return job{kind: jobImageName, event: event, ref: s}
}

func (g *Guard) work(ctx context.Context) {
	for {
		j, ok := g.queue.pop(ctx)
		if !ok {
			return
		}
		g.handle(ctx, j)
		g.queue.done()
	}
}

func (g *Guard) handle(ctx context.Context, j job) {
	p := g.policies.Current()
	if p == nil {
		g.log.WithFields(logrus.Fields{"event": j.event, "ref": j.ref}).Error("no policy in force; event not judged")
		return
	}
	switch j.kind {
	case jobRepository:
		g.handleRepository(ctx, p, j)
	case jobImageName:
		g.handleImageName(ctx, p, j)
	case jobImageID:
		g.enforceImage(ctx, p, j.event, j.ref, "", nil)
	case jobContainer:
		g.handleContainer(ctx, p, j)
	case jobContainerGone:
		g.keptMu.Lock()
		k, was := g.kept[j.ref]
		delete(g.kept, j.ref)
		g.keptMu.Unlock()
		if was && k.recheck {
			// Its image was left alone while the container used it.
			g.enforceImage(ctx, p, j.event, k.imageID, "", nil)
		}
	}
}

// handleImageName acts on one name an event put on an image.
func (g *Guard) handleImageName(ctx context.Context, p *policy.Policy, j job) {
	// Even a name the policy allows on its own is looked at with the
	// image: a deny rule may list the digest it was pulled as.
	d := p.Decide(j.ref, g.now())
	img, err := g.api.InspectImage(ctx, j.ref)
	switch {
	case errors.Is(err, ErrNotFound):
		return // already gone
	case err != nil:
		rec := g.record(p, j.event)
		rec.Action, rec.Decision, rec.Err = enforcer.Failed, d, err
		g.rep.Report(rec)
		return
	}
	g.enforceImage(ctx, p, j.event, img.ID, j.ref, nil)
}

// handleRepository judges every image with a name in the repository a
// pull of all tags brought: which images it brought is not in the event.
func (g *Guard) handleRepository(ctx context.Context, p *policy.Policy, j job) {
	repo := normalize(j.ref)
	if r, err := policy.ParseRef(j.ref); err == nil {
		repo = r.Name
	}
	imgs, err := g.api.ListImages(ctx)
	if err != nil {
		g.log.WithFields(logrus.Fields{"event": j.event, "repository": repo, "error": err}).
			Error("cannot list images after a pull of all tags; the next reconcile judges them")
		return
	}
	for _, img := range imgs {
		for _, n := range namesOf(img) {
			if n.repo == repo {
				g.enforceImage(ctx, p, j.event, img.ID, "", nil)
				break
			}
		}
	}
}

// enforceImage brings one image in line: its name only, or all its names.
// The image is inspected again under its lock, so that concurrent work on
// it cannot make the plan stale. usedBy are containers known to stay and
// use the image (reconcile).
func (g *Guard) enforceImage(ctx context.Context, p *policy.Policy, event, id, only string, usedBy []string) {
	unlock := g.images.lock(id)
	defer unlock()
	img, err := g.api.InspectImage(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return
	case err != nil:
		g.log.WithFields(logrus.Fields{"event": event, "image_id": id, "error": err}).Error("cannot inspect image")
		return
	}
	plan := planImage(img, p, g.now(), only)
	if plan.Empties && len(usedBy) > 0 {
		// Docker keeps an image's last name while a container uses it;
		// the container's own record says why it stays.
		for _, r := range plan.Removals {
			rec := g.record(p, event)
			rec.Action, rec.ImageID, rec.ContainerID, rec.Decision = enforcer.Reported, img.ID, usedBy[0], r.Decision
			g.rep.Report(rec)
		}
		return
	}
	for _, r := range plan.Removals {
		rec := g.record(p, event)
		rec.Image, rec.ImageID, rec.Decision = normalize(r.Name), img.ID, r.Decision
		switch {
		case r.Blocked != nil:
			rec.Action, rec.Err = enforcer.Failed, r.Blocked
		case p.Mode != policy.ModeEnforce:
			rec.Action = enforcer.Audited(enforcer.Removed)
		default:
			if g.policies.Current() != p {
				// A reload landed: the reconcile it requested judges
				// again under the new policy; acting on under the old one
				// could remove what the operator just allowed.
				return
			}
			// Docker removes whatever the name points to now. A pull may
			// have moved it to another image since the plan was made;
			// that image's own event judges it.
			if cur, err := g.api.InspectImage(ctx, r.Name); err != nil || cur.ID != img.ID {
				continue
			}
			deleted, err := g.api.RemoveImageName(ctx, r.Name)
			switch {
			case errors.Is(err, ErrNotFound):
				continue // someone else was faster
			case errors.Is(err, ErrInUse):
				// A container was created from it meanwhile; judging that
				// container queues this image again once it is gone.
				g.log.WithFields(logrus.Fields{"event": event, "image_id": img.ID, "name": r.Name}).
					Info("disallowed name kept for now: a container uses the image")
				continue
			case err != nil:
				rec.Action, rec.Err = enforcer.Failed, err
			case deleted:
				rec.Action = enforcer.Removed
			default:
				rec.Action = enforcer.Untagged
			}
		}
		g.rep.Report(rec)
	}
}

// handleContainer removes a container created or started from an image
// the policy does not allow.
func (g *Guard) handleContainer(ctx context.Context, p *policy.Policy, j job) {
	unlock := g.containers.lock(j.ref)
	defer unlock()
	if g.isKept(j.ref) {
		return // reported already, and left in place
	}
	c, err := g.api.InspectContainer(ctx, j.ref)
	switch {
	case errors.Is(err, ErrNotFound):
		return
	case err != nil:
		g.log.WithFields(logrus.Fields{"event": j.event, "container_id": j.ref, "error": err}).Error("cannot inspect container")
		return
	}
	if c.State == "removing" {
		return
	}
	img, err := imageOf(ctx, g.api, c.ImageID, map[string]*Image{})
	if err != nil {
		g.log.WithFields(logrus.Fields{"event": j.event, "container_id": c.ID, "error": err}).Error("cannot inspect the container's image")
		return
	}
	v := judgeContainer(c.Image, c.ImageID, img, p, g.now())
	if v.Allowed {
		return
	}
	rec := g.record(p, j.event)
	rec.ContainerID, rec.ImageID, rec.Decision = c.ID, c.ImageID, v.Decision
	if p.Mode != policy.ModeEnforce {
		rec.Action = enforcer.Audited(enforcer.Removed)
		g.rep.Report(rec)
		g.keptMu.Lock()
		g.kept[c.ID] = keptContainer{imageID: c.ImageID}
		g.keptMu.Unlock()
		return
	}
	// Force: a start may have raced this removal.
	switch err := g.api.RemoveContainer(ctx, c.ID); {
	case errors.Is(err, ErrNotFound):
		return
	case err != nil:
		rec.Action, rec.Err = enforcer.Failed, err
	default:
		rec.Action = enforcer.Removed
	}
	g.rep.Report(rec)
	if rec.Action == enforcer.Removed && c.ImageID != "" {
		// The image's disallowed names may have stayed because this
		// container used it.
		g.queue.push(job{kind: jobImageID, event: j.event, ref: c.ImageID})
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

// reconcile brings the whole host in line with the policy in force.
func (g *Guard) reconcile(ctx context.Context, why string) error {
	p := g.policies.Current()
	if p == nil {
		return errors.New("no policy in force")
	}
	began := time.Now()
	s, err := takeSurvey(ctx, g.api, p, g.now())
	if g.afterReconcile != nil {
		defer func() { g.afterReconcile(err) }()
	}
	if err != nil {
		return err
	}
	kept := map[string]keptContainer{}
	// Containers in parallel: a stop waits out each container's stop
	// timeout (10 s by default), and there may be many of them.
	var wg sync.WaitGroup
	slots := make(chan struct{}, g.workers)
	for _, st := range s.Containers {
		if st.Action == enforcer.Reported || p.Mode != policy.ModeEnforce {
			kept[st.Container.ID] = keptContainer{imageID: st.Container.ImageID, recheck: p.Mode == policy.ModeEnforce}
		}
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			g.carryOutContainer(ctx, p, st)
		})
	}
	wg.Wait()
	g.keptMu.Lock()
	g.kept = kept
	g.keptMu.Unlock()
	for _, st := range s.Images {
		if g.policies.Current() != p {
			g.log.WithField("policy_hash", p.Hash).Info("policy reloaded during reconcile; the next reconcile judges under the new one")
			return nil
		}
		g.enforceImage(ctx, p, eventReconcile, st.Plan.Image.ID, "", st.UsedBy)
	}
	g.log.WithFields(logrus.Fields{
		"trigger": why, "images": s.ImageCount, "containers": s.ContainerCount,
		"disallowed_images": len(s.Images), "disallowed_containers": len(s.Containers),
		"mode": p.Mode, "policy_hash": p.Hash, "duration": time.Since(began).Round(time.Millisecond).String(),
	}).Info("reconciled docker")
	return nil
}

const eventReconcile = "reconcile"

// carryOutContainer acts on one disallowed container found by reconcile.
func (g *Guard) carryOutContainer(ctx context.Context, p *policy.Policy, st containerStep) {
	unlock := g.containers.lock(st.Container.ID)
	defer unlock()
	rec := g.record(p, eventReconcile)
	rec.ContainerID, rec.ImageID, rec.Decision = st.Container.ID, st.Container.ImageID, st.Verdict.Decision
	rec.Action = st.Action
	if p.Mode == policy.ModeEnforce && st.Action != enforcer.Reported && g.policies.Current() != p {
		return // a reload landed; its reconcile judges this container again
	}
	if p.Mode != policy.ModeEnforce || st.Action == enforcer.Reported {
		rec.Action = enforcer.Audited(st.Action)
		g.rep.Report(rec)
		return
	}
	if st.Action == enforcer.Stopped {
		switch err := g.api.StopContainer(ctx, st.Container.ID); {
		case errors.Is(err, ErrNotFound):
			return
		case err != nil:
			rec.Action, rec.Err = enforcer.Failed, err
			g.rep.Report(rec)
			return
		}
	}
	switch err := g.api.RemoveContainer(ctx, st.Container.ID); {
	case errors.Is(err, ErrNotFound):
		if st.Action != enforcer.Stopped {
			return
		}
		// Stopped, then gone by itself (docker run --rm): still our doing.
	case err != nil:
		rec.Action, rec.Err = enforcer.Failed, err
	}
	g.rep.Report(rec)
}

// record starts a Record for an event under p.
func (g *Guard) record(p *policy.Policy, event string) enforcer.Record {
	return enforcer.Record{Runtime: enforcer.RuntimeDocker, Event: event, Mode: p.Mode, Time: g.now()}
}
