package docker

import (
	"context"
	"errors"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// A reconcile: every container and image judged at once (survey.go) and
// brought in line.

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
	s, err := takeSurvey(ctx, g.api, p, g.now(), ps)
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
