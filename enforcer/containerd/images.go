package containerd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/internal/engine"
	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

func isNotFound(err error) bool { return err != nil && errdefs.IsNotFound(err) }

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

// recordStep is one record the policy wants deleted.
type recordStep struct {
	Image
	Action   enforcer.Action // Removed or Untagged
	Decision policy.Decision
}

// contentPlan is what the policy asks of the records of one content in one
// namespace. It is computed by planContent, which calls no runtime.
type contentPlan struct {
	Verdict policy.ImageDecision
	// Names are the denied name records to delete: Untagged while the
	// content keeps an allowed name, Removed when it keeps none.
	Names []recordStep
	// IDs are the records named by image ID to delete with the last name.
	IDs []recordStep
	// Unverifiable, when set, is a name denied only because its signature
	// could not be verified: nothing is deleted, the failure is reported
	// and the next resync asks again.
	Unverifiable *policy.NameDecision
	// Unknown are names the policy allows whose provenance the registry
	// could not confirm or deny: reported failed, kept (provenance.go).
	Unknown []recordStep
}

// planContent judges every record that points at one content, with the
// content's digest (policy.DecideImage):
//
//   - While at least one name of the content is allowed, only the
//     disallowed names are deleted (untagged): the content stays, and so do
//     its records named by image ID (CRI's sha256:<config> record).
//   - When no name is allowed, every record of the content is deleted,
//     image-ID records included, so that no unnamed record keeps disallowed
//     content alive.
//
// ev is what the registry said about where the content came from (nil: no
// registry to ask); sigs answers for signed-by rules, about the target
// (nil: they deny).
func planContent(p *policy.Policy, now time.Time, recs []Image, target string, ev *provenance.Evidence, sigs policy.SignatureSource) contentPlan {
	judge, names := p, recordNames(recs)
	if ev == nil {
		// No registry to ask: a record does not say how it arrived, so
		// names alone are judged (provenance.go).
		judge = p.NamesOnly()
	} else {
		names = append(names, ev.Served...) // repositories that serve the content
	}
	plan := contentPlan{Verdict: judge.DecideImageWith(names, target, now, sigs)}
	plan.Verdict.Names = plan.Verdict.Names[:len(recs)]
	if plan.Unverifiable = plan.Verdict.Unverifiable(); plan.Unverifiable != nil {
		return plan
	}
	// A name denied only for want of provenance, while the registry could
	// not answer, is no definite denial: it stays, reported failed, and the
	// content is not treated as nameless.
	if ev != nil && ev.Unknown != nil {
		for i, n := range plan.Verdict.Names {
			if n.Unproven {
				plan.Unknown = append(plan.Unknown, recordStep{Image: recs[i], Action: enforcer.Failed, Decision: n.Decision})
				plan.Verdict.Allowed = true
			}
		}
	}
	action := enforcer.Removed
	if plan.Verdict.Allowed {
		action = enforcer.Untagged
	}
	var denied []string
	for i, n := range plan.Verdict.Names {
		if n.ImageID || n.Decision.Allowed || (n.Unproven && ev != nil && ev.Unknown != nil) {
			continue
		}
		plan.Names = append(plan.Names, recordStep{Image: recs[i], Action: action, Decision: n.Decision})
		denied = append(denied, recs[i].Name)
	}
	if plan.Verdict.Allowed {
		return plan
	}
	reason := "a record named by image ID; the image has no name"
	if len(denied) > 0 {
		reason = "a record named by image ID; none of the image's names is allowed (" + strings.Join(denied, ", ") + ")"
	}
	for i, n := range plan.Verdict.Names {
		if n.ImageID {
			plan.IDs = append(plan.IDs, recordStep{Image: recs[i], Action: enforcer.Removed,
				Decision: policy.Decision{Input: recs[i].Name, Reason: reason, PolicyHash: p.Hash}})
		}
	}
	return plan
}

// planDenied is the plan for content that evidence denied although one of
// its names is allowed: every record goes, image-ID records included.
func planDenied(recs []Image, d policy.Decision) contentPlan {
	var plan contentPlan
	for _, r := range recs {
		dr := d
		dr.Input = r.Name
		st := recordStep{Image: r, Action: enforcer.Removed, Decision: dr}
		if _, err := policy.ParseRef(r.Name); errors.Is(err, policy.ErrImageID) {
			plan.IDs = append(plan.IDs, st)
		} else {
			plan.Names = append(plan.Names, st)
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
	sigs := g.sigs(ctx)
	ev := g.gatherEvidence(ctx, p, now, recs, img.Target, sigs) // provenance.go
	plan := planContent(p, now, recs, img.Target, ev, sigs)
	if u := plan.Unverifiable; u != nil {
		g.exec.Execute(ctx, engine.Step{Policy: p, Record: enforcer.Record{Action: enforcer.Failed, Namespace: ns, Event: event,
			Image: displayName(u.Name), ImageID: img.Target, Decision: u.Decision, Err: enforcer.ErrSignatureUnverifiable}})
		return
	}
	for _, st := range plan.Unknown {
		g.exec.Execute(ctx, engine.Step{Policy: p, Record: enforcer.Record{Action: enforcer.Failed, Namespace: ns,
			Event: event, Image: displayName(st.Name), ImageID: st.Target, Decision: st.Decision, Err: ev.Unknown}})
	}
	vetoed := false // evidence denied content the policy allows
	if g.evidence != nil && plan.Verdict.Allowed {
		subject := enforcer.ImageSubject{Runtime: enforcer.RuntimeContainerd, Namespace: ns, ID: img.Target, Digest: img.Target, Names: recordNames(recs)}
		if d := g.evidence.Check(ctx, subject, plan.Verdict); d != nil {
			plan, vetoed = planDenied(recs, *d), true
		}
	}
	for _, st := range plan.Names {
		if g.deleteRecord(ctx, p, ns, st, event, trigger, recs, ev, sigs) == engine.Stale {
			return
		}
	}
	if len(plan.IDs) == 0 {
		return
	}
	if p.Mode == policy.ModeEnforce && !vetoed {
		// A name may have been added since the listing (a pull of an
		// allowed name for the same content): never remove the image-ID
		// records of content that has an allowed name.
		again, err := g.api.ImagesByTarget(ctx, ns, img.Target)
		if err != nil {
			log.WithError(err).Warn("containerd: cannot list the image's records; the next reconcile judges them")
			return
		}
		if planContent(p, now, again, img.Target, ev, sigs).Verdict.Allowed {
			return
		}
	}
	for _, st := range plan.IDs {
		if g.deleteRecord(ctx, p, ns, st, event, trigger, recs, ev, sigs) == engine.Stale {
			return
		}
	}
}

// deleteRecord has the executor delete one record (in enforce mode) and
// report it. A record that is already gone is not reported: someone else
// removed it.
func (g *Guard) deleteRecord(ctx context.Context, p *policy.Policy, ns string, st recordStep, event, trigger string, recs []Image, ev *provenance.Evidence, sigs policy.SignatureSource) engine.Outcome {
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
			v := planContent(prev, g.now(), recs, st.Target, ev, sigs)
			for _, n := range append(v.Names, v.IDs...) {
				if n.Name == st.Name {
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
