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

// judged is an image record with the policy's decision on it.
type judged struct {
	Image
	decision policy.Decision
}

// judgeContent judges every record that points at img's content, in one
// namespace, and removes the disallowed ones:
//
//   - Names are judged with the content's digest attached (repo:tag@digest),
//     so that digest-pinned rules apply to records named by tag.
//   - While at least one name of the content is allowed, only the
//     disallowed names are deleted (untagged): the content stays, and so do
//     its records named by image ID (CRI's sha256:<config> record).
//   - When no name is allowed, every record of the content is deleted,
//     image-ID records included, so that no unnamed record keeps disallowed
//     content alive.
//
// trigger is the record an event named; in audit mode only it is reported,
// so that each event of a CRI pull (one per record) reports one record. A
// reconcile (trigger "") reports every record.
func (g *Guard) judgeContent(ctx context.Context, ns string, img Image, event, trigger string) {
	if img.Target != "" {
		unlock := g.locks.lock("i\x00" + ns + "\x00" + img.Target)
		defer unlock()
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
		recs, err = g.api.ImagesByTarget(ctx, ns, img.Target)
		if err != nil {
			log.WithError(err).Warn("containerd: cannot list the image's records; the next reconcile judges them")
			return
		}
	}
	allowed, denied, ids := classify(p, now, recs)

	act := func(j judged, action enforcer.Action) {
		if p.Mode != policy.ModeEnforce && trigger != "" && j.Name != trigger {
			return
		}
		g.deleteImage(ctx, p, now, ns, j, action, event)
	}
	if len(allowed) > 0 {
		for _, j := range denied {
			act(j, enforcer.Untagged)
		}
		return
	}
	for _, j := range denied {
		act(j, enforcer.Removed)
	}
	if len(ids) == 0 {
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
		if a, _, _ := classify(p, now, again); len(a) > 0 {
			return
		}
	}
	reason := "a record named by image ID; the image has no name"
	if len(denied) > 0 {
		names := make([]string, len(denied))
		for i, j := range denied {
			names[i] = j.Name
		}
		reason = "a record named by image ID; none of the image's names is allowed (" + strings.Join(names, ", ") + ")"
	}
	for _, id := range ids {
		act(judged{Image: id, decision: policy.Decision{Input: id.Name, Reason: reason}}, enforcer.Removed)
	}
}

// classify sorts an image's records into allowed and denied names and
// records named by image ID, which say nothing about where the image came
// from and are judged through the image's names.
func classify(p *policy.Policy, now time.Time, recs []Image) (allowed, denied []judged, ids []Image) {
	for _, r := range recs {
		ref, err := policy.ParseRef(r.Name)
		if errors.Is(err, policy.ErrImageID) {
			ids = append(ids, r)
			continue
		}
		input := r.Name
		if err == nil && ref.Digest == "" && r.Target != "" {
			input = r.Name + "@" + r.Target
		}
		d := p.Decide(input, now)
		if d.Allowed {
			allowed = append(allowed, judged{r, d})
		} else {
			denied = append(denied, judged{r, d})
		}
	}
	// CRI records a pull of repo:tag also as repo@digest. That record has
	// no tag, so a rule with tags: cannot allow it on its own; it follows
	// the tag of its repository that is allowed for the same content.
	allowedRepos := map[string]bool{}
	for _, j := range allowed {
		if ref, err := policy.ParseRef(j.Name); err == nil && ref.Tag != "" {
			allowedRepos[ref.Name] = true
		}
	}
	kept := denied[:0]
	for _, j := range denied {
		if ref, err := policy.ParseRef(j.Name); err == nil && ref.Tag == "" && ref.Digest != "" && allowedRepos[ref.Name] {
			allowed = append(allowed, j)
			continue
		}
		kept = append(kept, j)
	}
	return allowed, kept, ids
}

// deleteImage deletes one record (in enforce mode) and reports it. A record
// that is already gone is not reported: someone else removed it.
func (g *Guard) deleteImage(ctx context.Context, p *policy.Policy, now time.Time, ns string, j judged, action enforcer.Action, event string) {
	r := enforcer.Record{
		Action:    action,
		Namespace: ns,
		Event:     event,
		Image:     displayName(j.Name),
		ImageID:   j.Target,
		Mode:      p.Mode,
		Decision:  j.decision,
		Time:      now,
	}
	if p.Mode != policy.ModeEnforce {
		r.Action = enforcer.Audited(action)
		g.report(r)
		return
	}
	if g.policy() != p {
		return // a reload landed; its reconcile judges this record again
	}
	// Deleting is by name: a pull may have re-pointed the record at other
	// content since it was judged. Its /images/update event judges that.
	if cur, err := g.api.Image(ctx, ns, j.Name); err != nil || cur.Target != j.Target {
		return
	}
	err := g.api.DeleteImage(ctx, ns, j.Name)
	if isNotFound(err) {
		return
	}
	if err != nil {
		r.Action = enforcer.Failed
		r.Err = fmt.Errorf("deleting image %s in namespace %s: %w", j.Name, ns, err)
	}
	g.report(r)
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
