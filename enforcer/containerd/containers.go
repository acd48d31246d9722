package containerd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/engine"
	"github.com/pullguard/pullguard/policy"
)

// containerEvent judges the container a container or task event names.
func (g *Guard) containerEvent(ctx context.Context, ns, id, topic string) {
	c, err := g.api.Container(ctx, ns, id)
	if isNotFound(err) {
		return
	}
	if err != nil {
		g.log.WithError(err).WithFields(logrus.Fields{"namespace": ns, "container": id, "event": topic}).
			Warn("containerd: cannot look up the container; the next reconcile judges it")
		return
	}
	g.checkContainer(ctx, ns, c, topic)
}

// checkContainer removes a container whose image the policy does not
// allow. A container found by an event is new: it is removed, its task
// killed first. One found running by a reconcile was running before (before
// pullguard started, or before a policy reload): it is only reported,
// unless the policy says running: stop.
func (g *Guard) checkContainer(ctx context.Context, ns string, c Container, event string) {
	key := "c\x00" + ns + "\x00" + c.ID
	g.locks.Lock(key)
	defer g.locks.Unlock(key)
	log := g.log.WithFields(logrus.Fields{"namespace": ns, "container": c.ID, "event": event})
	p := g.policy()
	if p == nil {
		return
	}
	now := g.now()

	cv, err := g.containerDecision(ctx, ns, c, p, now)
	if errors.Is(err, errNoImage) {
		// Containers on a root file system of their own (ctr run --rootfs).
		log.Debug("containerd: the container names no image; nothing to judge")
		return
	}
	if err != nil {
		log.WithError(err).Info("containerd: cannot judge the container's image; leaving it alone")
		return
	}
	d, imageID := cv.Decision, cv.ImageID
	switch cv.Outcome {
	case policy.Allowed:
		g.setKept(ns, c.ID, false)
		return
	case policy.Undecided:
		g.exec.Execute(ctx, engine.Step{Policy: p, Record: enforcer.Record{Action: enforcer.Failed, Namespace: ns, Event: event,
			ImageID: imageID, ContainerID: c.ID, Decision: d, Time: now, Err: cv.Err}})
		return
	}
	if event != reconcileEvent && g.isKept(ns, c.ID) {
		log.Debug("containerd: a container left running under running: keep started again; left alone")
		return
	}
	status, err := g.api.TaskStatus(ctx, ns, c.ID)
	switch {
	case isNotFound(err):
		status = ""
	case err != nil:
		log.WithError(err).Warn("containerd: cannot read the container's task; the next reconcile judges it")
		return
	}
	running := status != "" && status != TaskStopped && status != TaskCreated

	r := enforcer.Record{
		Action:      enforcer.Removed,
		Namespace:   ns,
		Event:       event,
		ImageID:     imageID,
		ContainerID: c.ID,
		Decision:    d,
		Time:        now,
	}
	step := engine.Step{Policy: p, Record: r}
	if running {
		step.Record.Action = enforcer.Stopped
		if event == reconcileEvent && p.Running != policy.RunningStop {
			step.Record.Action = enforcer.Reported
			g.setKept(ns, c.ID, true)
			g.exec.Execute(ctx, step)
			return
		}
	}
	step.Do = func(ctx context.Context) (enforcer.Action, error) {
		return "", g.removeContainer(ctx, ns, c.ID, status)
	}
	step.AllowedBy = func(prev *policy.Policy) bool {
		// Allowed before, or undecided: the previous policy would not remove it.
		cv, err := g.containerDecision(ctx, ns, c, prev, now)
		return err == nil && cv.Outcome != policy.Denied
	}
	if g.exec.Execute(ctx, step) == engine.Reported && p.Mode == policy.ModeEnforce {
		g.setKept(ns, c.ID, false)
	}
}

func (g *Guard) isKept(ns, id string) bool {
	g.keptMu.Lock()
	defer g.keptMu.Unlock()
	return g.kept[ns+"\x00"+id]
}

func (g *Guard) setKept(ns, id string, kept bool) {
	g.keptMu.Lock()
	defer g.keptMu.Unlock()
	if !kept {
		delete(g.kept, ns+"\x00"+id)
		return
	}
	if g.kept == nil {
		g.kept = map[string]bool{}
	}
	g.kept[ns+"\x00"+id] = true
}

// removeContainer kills and deletes the task, then deletes the container
// with its snapshot. Whatever is already gone is skipped.
func (g *Guard) removeContainer(ctx context.Context, ns, id string, status TaskStatus) error {
	if status != "" {
		if status != TaskStopped {
			if err := g.api.KillTask(ctx, ns, id); err != nil && !isNotFound(err) {
				return fmt.Errorf("killing the task of container %s in namespace %s: %w", id, ns, err)
			}
		}
		if err := g.api.DeleteTask(ctx, ns, id); err != nil && !isNotFound(err) {
			return fmt.Errorf("deleting the task of container %s in namespace %s: %w", id, ns, err)
		}
	}
	if err := g.api.DeleteContainer(ctx, ns, id); err != nil && !isNotFound(err) {
		return fmt.Errorf("deleting container %s in namespace %s: %w", id, ns, err)
	}
	return nil
}

// errNoImage: the container names no image the guard can judge.
var errNoImage = errors.New("the container names no image")

// containerVerdict is the verdict on the image a container runs.
type containerVerdict struct {
	policy.Decision
	Outcome policy.Outcome
	Err     error  // why it is undecided
	ImageID string // the content's digest, when it was looked up
}

// containerDecision judges the image a container runs. The image is the
// container's Image field, or for CRI containers (which leave it empty) the
// image-name label or runtime-spec annotation, or a sandbox's image
// annotation. The first of these that is a reference is judged: as the
// record of that name, with the content it points at and the content's
// other names (judgeRecords), or by name alone when no such record is left
// (nothing then says what the content was). When they name only an image
// ID (CRI names the image by ID when kubelet passes no user reference), the
// image is judged by the names its records have.
func (g *Guard) containerDecision(ctx context.Context, ns string, c Container, p *policy.Policy, now time.Time) (containerVerdict, error) {
	candidates := []string{c.Image, c.Labels[criImageName], c.Annotations[criImageName], c.Annotations[criSandboxImageName]}
	ps := g.judge.Pass(ctx)
	var id string
	for _, name := range candidates {
		if name == "" {
			continue
		}
		_, err := policy.ParseRef(name)
		if errors.Is(err, policy.ErrImageID) {
			if id == "" {
				id = name
			}
			continue
		}
		img, err := g.api.Image(ctx, ns, name)
		switch {
		case isNotFound(err) || err == nil && img.Target == "":
			// No record: nothing says which content the name stood for.
			// A denied name is denied; an allowed one is undecided where
			// provenance matters (a signed-by rule has no digest to verify
			// and denies).
			return verdictOf(ps.Judge(p, policy.Image{Names: []string{name}}, now), 0, ""), nil
		case err != nil:
			return containerVerdict{}, fmt.Errorf("looking up image %s: %w", name, err)
		}
		recs, err := g.api.ImagesByTarget(ctx, ns, img.Target)
		if err != nil {
			return containerVerdict{}, fmt.Errorf("listing the names of image %s: %w", name, err)
		}
		v := judgeRecords(ps, p, now, recs, img.Target)
		for i, r := range recs {
			if r.Name == name {
				cv := verdictOf(v, i, img.Target)
				cv.Reference = displayName(name) // judged as name@target; shown as the name
				return cv, nil
			}
		}
		return containerVerdict{}, fmt.Errorf("image %s has no record of that name", name)
	}
	if id == "" {
		return containerVerdict{}, errNoImage
	}
	if !strings.HasPrefix(id, "sha256:") {
		id = "sha256:" + id
	}
	img, err := g.api.Image(ctx, ns, id)
	if err != nil {
		return containerVerdict{}, fmt.Errorf("looking up image %s: %w", id, err)
	}
	recs, err := g.api.ImagesByTarget(ctx, ns, img.Target)
	if err != nil {
		return containerVerdict{}, fmt.Errorf("listing the names of image %s: %w", id, err)
	}
	v := judgeRecords(ps, p, now, recs, img.Target)
	for _, n := range v.Names {
		if !n.ImageID {
			return containerVerdict{Decision: v.Decision, Outcome: v.Outcome, Err: evidence.Failure(v), ImageID: img.Target}, nil
		}
	}
	return containerVerdict{}, fmt.Errorf("image %s has no name to judge", id)
}

// verdictOf is the container's verdict when it runs the image name v.Names[i].
func verdictOf(v policy.Verdict, i int, imageID string) containerVerdict {
	n := v.Names[i]
	cv := containerVerdict{Decision: n.Decision, Outcome: n.Outcome, ImageID: imageID}
	if n.Outcome == policy.Undecided {
		cv.Err = evidence.Failure(v)
	}
	return cv
}
