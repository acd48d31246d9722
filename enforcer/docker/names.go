package docker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/internal/engine"
	"github.com/pullguard/pullguard/policy"
)

// Events that name an image (a pull, a tag, an untag): the name is judged
// first, and removed at once when the policy denies it whatever content it
// names.

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
			return err != nil || planImage(img, prev, g.now(), []string{name}, g.pass(ctx)).Removals == nil
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
