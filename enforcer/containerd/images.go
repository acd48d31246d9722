package containerd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/engine"
	"github.com/pullguard/pullguard/policy"
)

func isNotFound(err error) bool { return err != nil && errdefs.IsNotFound(err) }

func isUnavailable(err error) bool { return err != nil && errdefs.IsUnavailable(err) }

func isFailedPrecondition(err error) bool { return err != nil && errdefs.IsFailedPrecondition(err) }

// imageEvent judges the content an image event's record points at. The
// event carries only the name, so the record is looked up for its target.
func (g *Guard) imageEvent(ctx context.Context, ns, name, topic string) {
	img, err := g.api.Image(ctx, ns, name)
	if isNotFound(err) {
		return // deleted since: by us, for another of its names, or by its owner
	}
	if err != nil {
		g.log.WithError(err).WithFields(logrus.Fields{"namespace": ns, "image": name, "event": topic}).
			Warn("containerd: cannot look up the image; the next reconcile judges it")
		return
	}
	g.judgeContent(ctx, ns, img, topic, name)
}

// recordStep is one record the policy wants deleted, or reports failed.
type recordStep struct {
	Image
	Action   enforcer.Action // Removed, Untagged or Failed
	Decision policy.Decision
	err      error // why a Failed one could not be decided
}

// contentPlan is what the verdict on one content in one namespace asks of
// its records. planContent computes it without calling the runtime.
type contentPlan struct {
	Verdict policy.Verdict
	// Names are the denied name records to delete (Untagged while the
	// content is not denied, Removed when it is) and the undecided ones
	// to report failed and keep.
	Names []recordStep
	// IDs are the records named by image ID to delete with the last name.
	IDs []recordStep
}

// judgeRecords is the verdict on the content recs point at. A containerd
// record does not say how it arrived (ctr import, a transfer-service pull
// and `ctr images tag` make the same record, under any name), so its
// digest names prove nothing and the core asks the registry instead.
func judgeRecords(ps *evidence.Pass, p *policy.Policy, now time.Time, recs []Image, target string) policy.Verdict {
	return ps.Judge(p, policy.Image{Names: recordNames(recs), Digest: target}, now)
}

// planContent turns the verdict on every record that points at one content
// into steps:
//
//   - While the content is not denied (a name is allowed, or one is
//     undecided), only the denied names are deleted (untagged): the content
//     stays, and so do its records named by image ID (CRI's
//     sha256:<config> record). Undecided names are kept, reported failed.
//   - When it is denied, every record of the content is deleted, image-ID
//     records included, so that no unnamed record keeps it alive.
func planContent(p *policy.Policy, recs []Image, v policy.Verdict) contentPlan {
	plan := contentPlan{Verdict: v}
	action := enforcer.Untagged
	if v.Outcome == policy.Denied {
		action = enforcer.Removed
	}
	var denied []string
	for i, n := range v.Names {
		if n.ImageID {
			continue
		}
		switch evidence.ActOn(v, i) {
		case evidence.Remove:
			plan.Names = append(plan.Names, recordStep{Image: recs[i], Action: action, Decision: n.Decision})
			denied = append(denied, recs[i].Name)
		case evidence.Fail:
			plan.Names = append(plan.Names, recordStep{Image: recs[i], Action: enforcer.Failed, Decision: n.Decision, err: evidence.Failure(v)})
		}
	}
	if v.Outcome != policy.Denied {
		return plan
	}
	reason := "a record named by image ID; the image has no name"
	if len(denied) > 0 {
		reason = "a record named by image ID; none of the image's names is allowed (" + strings.Join(denied, ", ") + ")"
	}
	for i, n := range v.Names {
		if n.ImageID {
			plan.IDs = append(plan.IDs, recordStep{Image: recs[i], Action: enforcer.Removed,
				Decision: policy.Decision{Input: recs[i].Name, Reason: reason, PolicyHash: p.Hash}})
		}
	}
	return plan
}

// judgeContent judges every record that points at img's content, in one
// namespace, and deletes what the plan says. trigger is the record an event
// named; in audit mode only it is reported, so that each event of a CRI
// pull (one per record) reports one record. A reconcile (trigger "")
// reports every record.
func (g *Guard) judgeContent(ctx context.Context, ns string, img Image, event, trigger string) {
	if img.Target != "" {
		key := "i\x00" + ns + "\x00" + img.Target
		g.locks.Lock(key)
		defer g.locks.Unlock(key)
	}
	log := g.log.WithFields(logrus.Fields{"namespace": ns, "target": img.Target, "event": event})
	p := g.policy()
	if p == nil {
		return
	}
	now := g.now()
	recs := []Image{img}
	if img.Target != "" {
		var err error
		if recs, err = g.api.ImagesByTarget(ctx, ns, img.Target); err != nil {
			log.WithError(err).Warn("containerd: cannot list the image's records; the next reconcile judges them")
			return
		}
	}
	ps := g.judge.Pass(ctx)
	plan := planContent(p, recs, judgeRecords(ps, p, now, recs, img.Target))
	for _, st := range plan.Names {
		if g.deleteRecord(ctx, ps, p, ns, st, event, trigger, recs) == engine.Stale {
			return
		}
	}
	if len(plan.IDs) == 0 {
		return
	}
	if p.Mode == policy.ModeEnforce {
		// A name may have been added since the listing (a pull of an
		// allowed name for the same content): never remove the image-ID
		// records of content that has an allowed name.
		again, err := g.api.ImagesByTarget(ctx, ns, img.Target)
		if err != nil {
			log.WithError(err).Warn("containerd: cannot list the image's records; the next reconcile judges them")
			return
		}
		if judgeRecords(ps, p, now, again, img.Target).Outcome != policy.Denied {
			return
		}
	}
	for _, st := range plan.IDs {
		if g.deleteRecord(ctx, ps, p, ns, st, event, trigger, recs) == engine.Stale {
			return
		}
	}
}

// deleteRecord has the executor delete one record (in enforce mode) and
// report it, or report it failed. A record that is already gone is not
// reported: someone else removed it.
func (g *Guard) deleteRecord(ctx context.Context, ps *evidence.Pass, p *policy.Policy, ns string, st recordStep, event, trigger string, recs []Image) engine.Outcome {
	if st.Action == enforcer.Failed {
		return g.exec.Execute(ctx, engine.Step{Policy: p, Record: enforcer.Record{Action: enforcer.Failed, Namespace: ns,
			Event: event, Image: displayName(st.Name), ImageID: st.Target, Decision: st.Decision, Err: st.err}})
	}
	if p.Mode != policy.ModeEnforce && trigger != "" && st.Name != trigger {
		return engine.Skipped
	}
	return g.exec.Execute(ctx, engine.Step{
		Policy: p,
		Record: enforcer.Record{Action: st.Action, Namespace: ns, Event: event, Image: displayName(st.Name),
			ImageID: st.Target, Decision: st.Decision},
		Do: func(ctx context.Context) (enforcer.Action, error) {
			// Deleting is by name: a pull may have re-pointed the record
			// at other content since it was judged. Its /images/update
			// event judges that.
			if cur, err := g.api.Image(ctx, ns, st.Name); err != nil || cur.Target != st.Target {
				return "", engine.ErrNotNow
			}
			err := g.api.DeleteImage(ctx, ns, st.Name)
			if isNotFound(err) {
				return "", engine.ErrGone
			}
			if err != nil {
				return "", fmt.Errorf("deleting image %s in namespace %s: %w", st.Name, ns, err)
			}
			return "", nil
		},
		AllowedBy: func(prev *policy.Policy) bool {
			// Allowed before: the previous policy would not delete it.
			v := planContent(prev, recs, judgeRecords(ps, prev, g.now(), recs, st.Target))
			for _, n := range append(v.Names, v.IDs...) {
				if n.Name == st.Name && n.Action != enforcer.Failed {
					return false
				}
			}
			return true
		},
	})
}

// displayName is a record's name normalized as Docker shows names
// (docker.io/library/nginx:latest), without the digest the judgement
// attached; an image-ID record keeps its name.
func displayName(name string) string {
	if r, err := policy.ParseRef(name); err == nil {
		return r.String
	}
	return name
}

func recordNames(recs []Image) []string {
	names := make([]string, len(recs))
	for i, r := range recs {
		names[i] = r.Name
	}
	return names
}
