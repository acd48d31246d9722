package docker

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/engine"
	"github.com/pullguard/pullguard/policy"
)

// Bringing one image in line: its plan (judge.go) carried out by the
// executor, name by name.

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
	plan := planImage(img, p, g.now(), only, ps)
	steps := g.imageSteps(plan, p, event, usedBy, ps)
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
func (g *Guard) imageSteps(plan imagePlan, p *policy.Policy, event string, usedBy []string, ps *evidence.Pass) []engine.Step {
	img := plan.Image
	var steps []engine.Step
	for _, u := range plan.Failed {
		// No definite answer: the name stays until one is had.
		steps = append(steps, engine.Step{Policy: p, Record: enforcer.Record{Action: enforcer.Failed, Event: event,
			Image: normalize(u.Name), ImageID: img.ID, Decision: u.Decision, Err: plan.Err}})
	}
	if plan.Empties && len(usedBy) > 0 {
		// Docker keeps an image's last name while a container uses it;
		// the container's own record says why it stays.
		for _, r := range plan.Removals {
			steps = append(steps, engine.Step{Policy: p, Record: enforcer.Record{
				Action: enforcer.Reported, Event: event, Image: normalize(r.Name), ImageID: img.ID, ContainerID: usedBy[0], Decision: r.Decision}})
		}
		return steps
	}
	// A name the policy denies whatever content it names need not be
	// checked against the image again before it is removed: if it moved
	// to other content meanwhile, that content may not have it either
	// (policy.ContentMatters).
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
		check := p.ContentMatters(name, g.now())
		steps = append(steps, engine.Step{Policy: p, Record: rec,
			Do: func(ctx context.Context) (enforcer.Action, error) {
				return g.removeName(ctx, img.ID, name, event, check)
			},
			AllowedBy: func(prev *policy.Policy) bool {
				return planImage(img, prev, g.now(), []string{name}, ps).Removals == nil
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
