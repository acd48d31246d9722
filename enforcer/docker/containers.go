package docker

import (
	"context"
	"errors"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/internal/engine"
	"github.com/pullguard/pullguard/policy"
)

// Containers: judged by the image they run (judge.go), removed, stopped or
// reported.

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
	img, err := imageOf(ctx, g.api, c.ImageID, map[string]*Image{})
	if err != nil {
		g.log.WithFields(logrus.Fields{"event": event, "container_id": c.ID, "error": err}).Error("cannot inspect the container's image")
		return
	}
	v := judgeContainer(c.Image, c.ImageID, img, p, g.now(), ps)
	if v.Allowed {
		g.enforceImageMounts(ctx, p, c, event) // mounts.go
		return
	}
	rec := enforcer.Record{Action: enforcer.Removed, Event: event, ContainerID: c.ID, ImageID: c.ImageID, Decision: v.Decision}
	out := g.removeAtEvent(ctx, p, c, v, rec, func(prev *policy.Policy) bool {
		return judgeContainer(c.Image, c.ImageID, img, prev, g.now(), ps).Allowed
	})
	if out == engine.Reported && v.Outcome == policy.Denied && p.Mode == policy.ModeEnforce && c.ImageID != "" {
		// The image's disallowed names may have stayed because this
		// container used it.
		g.loop.Add(jobKey{jobImageID, c.ImageID}, jobValue{event: event})
	}
}

// removeAtEvent removes container c, just created or started, which v
// (the verdict on its image or on an image it mounts) does not allow, and
// journals rec: with force, since a start may have raced the removal. An
// undecided verdict removes nothing and is reported failed; in audit mode
// the container is remembered as left in place. allowedBy tells whether a
// policy just replaced allowed it (the executor then waits for the
// reload to settle).
func (g *Guard) removeAtEvent(ctx context.Context, p *policy.Policy, c Container, v verdict, rec enforcer.Record, allowedBy func(*policy.Policy) bool) engine.Outcome {
	if v.Outcome == policy.Undecided {
		rec.Action, rec.Err = enforcer.Failed, v.Err
		return g.exec.Execute(ctx, engine.Step{Policy: p, Record: rec})
	}
	if p.Mode != policy.ModeEnforce {
		g.keptMu.Lock()
		g.kept[c.ID] = keptContainer{imageID: c.ImageID}
		g.keptMu.Unlock()
	}
	return g.exec.Execute(ctx, engine.Step{Policy: p, Record: rec,
		Do: func(ctx context.Context) (enforcer.Action, error) {
			if err := g.api.RemoveContainer(ctx, c.ID); errors.Is(err, ErrNotFound) {
				return "", engine.ErrGone
			} else if err != nil {
				return "", err
			}
			return enforcer.Removed, nil
		},
		AllowedBy: allowedBy,
	})
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

// containerStep is the executor's step for one disallowed container a
// reconcile found.
func (g *Guard) containerStep(p *policy.Policy, st containerStep) engine.Step {
	c := st.Container
	s := engine.Step{Policy: p, Record: enforcer.Record{Action: st.Action, Event: eventReconcile,
		ContainerID: c.ID, ImageID: c.ImageID, Decision: st.Verdict.Decision}}
	if st.Action == enforcer.Reported || st.Action == enforcer.Failed {
		s.Record.Err = st.Verdict.Err
		return s
	}
	s.AllowedBy = func(prev *policy.Policy) bool {
		ctx := context.Background()
		img, err := imageOf(ctx, g.api, c.ImageID, map[string]*Image{})
		return err == nil && judgeContainer(c.Image, c.ImageID, img, prev, g.now(), g.pass(ctx)).Allowed && g.mountsAllowedBy(ctx, prev, c)
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
