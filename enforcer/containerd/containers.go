package containerd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/containerd/errdefs"

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
		if topic == TopicTaskCreate || topic == TopicTaskStart {
			// A task created while its container was being deleted
			// outlives it, with its shim: nothing else would end it.
			key := "c\x00" + ns + "\x00" + id
			wait := time.Duration(0)
			if topic == TopicTaskCreate {
				wait = lateTaskWait
			}
			g.locks.Lock(key)
			g.reapTask(ctx, ns, id, wait)
			g.locks.Unlock(key)
		}
		return
	}
	if err != nil {
		g.log.WithError(err).WithFields(logrus.Fields{"namespace": ns, "container": id, "event": topic}).
			Warn("containerd: cannot look up the container; the next reconcile judges it")
		return
	}
	g.checkContainer(ctx, ns, c, topic, nil, nil)
}

// checkContainer judges a container by the content it runs and removes it
// when the policy does not allow that content. One that starts from
// disallowed (or undecided) content while pullguard runs is stopped and
// removed whatever running: says. running: keep protects only a container
// that was running before pullguard started, or that pullguard saw
// allowed and a policy change disallowed since: a reconcile reports it and
// leaves it running (running: stop stops it).
func (g *Guard) checkContainer(ctx context.Context, ns string, c Container, event string, idx *nsImages, view snapshotView) {
	key := "c\x00" + ns + "\x00" + c.ID
	g.locks.Lock(key)
	defer g.locks.Unlock(key)
	log := g.log.WithFields(logrus.Fields{"namespace": ns, "container": c.ID, "event": event})
	p := g.policy()
	if p == nil {
		return
	}
	now := g.now()

	cv, err := g.containerDecision(ctx, ns, c, p, now, idx, view)
	if errors.Is(err, errNoImage) {
		log.Debug("containerd: the container runs a directory of the host and local-images: allow; nothing to judge")
		return
	}
	if err != nil {
		log.WithError(err).Info("containerd: cannot judge the container's content; the next reconcile judges it")
		return
	}
	d, imageID := cv.Decision, cv.ImageID
	if cv.Outcome == policy.Allowed {
		g.setAllowed(ns, c.ID)
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
	// protected: the container may have been allowed when it started.
	protected := event == reconcileEvent && g.protected(ns, c)
	if cv.Outcome == policy.Undecided && (protected || status == "" || status == TaskStopped) {
		// Not running, or running since before it could be judged: kept,
		// reported failed, judged again at the next resync. A task of it
		// that starts is stopped.
		g.exec.Execute(ctx, engine.Step{Policy: p, Record: enforcer.Record{Action: enforcer.Failed, Namespace: ns, Event: event,
			ImageID: imageID, ContainerID: c.ID, Decision: d, Time: now, Err: cv.Err}})
		return
	}
	if cv.Outcome == policy.Undecided && cv.Err != nil {
		// Started from content whose provenance is unknown: never admitted.
		d.Reason += ": " + cv.Err.Error()
	}

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
		if protected && p.Running != policy.RunningStop {
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
		cv, err := g.containerDecision(ctx, ns, c, prev, now, idx, view)
		return err == nil && cv.Outcome != policy.Denied
	}
	if g.exec.Execute(ctx, step) == engine.Reported && p.Mode == policy.ModeEnforce {
		g.setKept(ns, c.ID, false)
	}
}

// protected says whether a disallowed running container found by a
// reconcile may have been allowed when it started: pullguard saw it
// allowed, or it was created before this pullguard started (or containerd
// does not say when).
func (g *Guard) protected(ns string, c Container) bool {
	g.keptMu.Lock()
	seen := g.allowed[ns+"\x00"+c.ID]
	g.keptMu.Unlock()
	return seen || c.Created.IsZero() || c.Created.Before(g.started)
}

func (g *Guard) setAllowed(ns, id string) {
	g.keptMu.Lock()
	defer g.keptMu.Unlock()
	delete(g.kept, ns+"\x00"+id)
	if g.allowed == nil {
		g.allowed = map[string]bool{}
	}
	g.allowed[ns+"\x00"+id] = true
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

// errNoImage: the container runs no image and local-images: allow lets
// local content run.
var errNoImage = errors.New("the container runs no image")

// containerVerdict is the verdict on the content a container runs.
type containerVerdict struct {
	policy.Decision
	Outcome policy.Outcome
	Err     error  // why it is undecided
	ImageID string // the content's manifest digest, when it is an image's
}

// containerDecision judges the content container c runs: the images of
// the namespace whose layers its root file system snapshot was made from,
// each with all its names (and the name the container was created with,
// when that is a record of the same content: policy.ContainerNames). It
// is allowed when one of them is. A snapshot chain no image has is denied,
// and so is a root file system that is no snapshot under local-images:
// deny (errNoImage under allow). idx and view are one reconcile's listings;
// nil looks up what one container needs.
func (g *Guard) containerDecision(ctx context.Context, ns string, c Container, p *policy.Policy, now time.Time, idx *nsImages, view snapshotView) (containerVerdict, error) {
	shown := claimed(c)
	chain, err := g.chainOf(ctx, ns, c, view)
	switch {
	case errors.Is(err, errNoSnapshot):
		if p.LocalImages != policy.LocalImagesDeny {
			return containerVerdict{}, errNoImage
		}
		return g.notAnImage(p, shown, "its root file system is a directory of the host, not an image (local-images: deny)"), nil
	case errors.Is(err, errSnapshotGone):
		if _, err := g.api.Container(ctx, ns, c.ID); isNotFound(err) {
			return containerVerdict{}, fmt.Errorf("the container was deleted: %w", errSnapshotGone)
		}
		return g.notAnImage(p, shown, fmt.Sprintf("its root file system snapshot %s (%s) does not exist", c.SnapshotKey, c.Snapshotter)), nil
	case err != nil:
		return containerVerdict{}, err
	}
	if idx == nil {
		recs, err := g.api.Images(ctx, ns)
		if err != nil {
			return containerVerdict{}, fmt.Errorf("listing images: %w", err)
		}
		if idx, err = g.indexImages(ctx, ns, recs); err != nil {
			return containerVerdict{}, err
		}
	}
	targets, err := g.targetsOf(ctx, ns, idx, chain)
	if err != nil {
		return containerVerdict{}, err
	}
	ps := g.judge.Pass(ctx)
	var images []policy.Image
	for _, target := range targets {
		recs := idx.byTarget[target]
		img := policy.Image{Names: recordNames(recs), Digest: target}
		if shown != "" && slices.ContainsFunc(recs, func(r Image) bool { return sameName(r.Name, shown) }) {
			// The name the container was created with is a record of the
			// very content it runs: that image is what it runs (typed
			// first, policy.ContainerNames), whatever other images have
			// the same layers.
			img.Names = p.ContainerNames(policy.Container{Typed: shown, ImageID: target, Names: img.Names})
			images = []policy.Image{img}
			break
		}
		images = append(images, img)
	}
	if len(images) == 0 {
		if r, ok := g.recall(ns, c.ID); ok && r.chain == chain && chain != "" {
			images = append(images, r.image) // its records were deleted since
		}
	}
	if len(images) == 0 {
		what := "its root file system (snapshot " + c.SnapshotKey + ", " + c.Snapshotter + ") was prepared from nothing: it is no image's content"
		if chain != "" {
			what = "its root file system (snapshot chain " + chain + ", " + c.Snapshotter + ") is the content of no image in namespace " + ns
		}
		return g.notAnImage(p, shown, what), nil
	}
	var out containerVerdict
	for i, img := range images {
		v := idx.judge(ps, p, img, now)
		cv := containerVerdict{Decision: v.Decision, Outcome: v.Outcome, Err: evidence.Failure(v), ImageID: img.Digest}
		if cv.Input != "" {
			cv.Reference = displayName(cv.Input) // judged as name@target; shown as the name
		}
		if i == 0 || rank(cv.Outcome) > rank(out.Outcome) {
			out = cv
		}
		if v.Outcome == policy.Allowed {
			g.remember(ns, c.ID, remembered{chain: chain, image: img})
			break
		}
	}
	return out, nil
}

// sameName reports whether record name a and the name b a container
// gives are one reference.
func sameName(a, b string) bool {
	return a == b || displayName(a) == displayName(b)
}

// rank orders outcomes for a container whose content several images have:
// one allowed image allows it; else one undecided leaves it undecided.
func rank(o policy.Outcome) int {
	switch o {
	case policy.Allowed:
		return 2
	case policy.Undecided:
		return 1
	}
	return 0
}

// notAnImage is the verdict on a container whose content is no image's.
func (g *Guard) notAnImage(p *policy.Policy, shown, why string) containerVerdict {
	d := policy.Decision{Input: shown, Reason: why, PolicyHash: p.Hash}
	if shown != "" {
		if r, err := p.ParseRef(shown); err == nil {
			d.Reference = r.String
		}
		d.Reason += "; the container names " + shown + ", which proves nothing"
	}
	return containerVerdict{Decision: d, Outcome: policy.Denied}
}

// removeContainer removes a container the way containerd's client does:
// its task killed and deleted first, then the container with its
// snapshot. A task being created while this runs is registered only once
// its shim has started, so the deletion may find one that was not there a
// moment before (FailedPrecondition), or a task may appear right after
// the container is gone: either is killed and deleted too, so that no
// task, runc init or shim outlives the container. Whatever is already
// gone is skipped.
func (g *Guard) removeContainer(ctx context.Context, ns, id string, status TaskStatus) error {
	const attempts = 5
	for i := 0; ; i++ {
		if err := g.deleteTask(ctx, ns, id, status); err != nil {
			return err
		}
		err := g.api.DeleteContainer(ctx, ns, id)
		if isNotFound(err) {
			break
		}
		if isFailedPrecondition(err) && i < attempts {
			// A task appeared: read its state again.
			if status, err = g.api.TaskStatus(ctx, ns, id); isNotFound(err) {
				status = ""
			} else if err != nil {
				return fmt.Errorf("reading the task of container %s in namespace %s: %w", id, ns, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("deleting container %s in namespace %s: %w", id, ns, err)
		}
		break
	}
	// A task whose creation was under way when the container went (one
	// that shows later is ended at its /tasks/create event).
	g.reapTask(ctx, ns, id, 0)
	return nil
}

// deleteTask kills (unless it has exited) and deletes a task of status
// status ("" for none).
func (g *Guard) deleteTask(ctx context.Context, ns, id string, status TaskStatus) error {
	if status == "" {
		return nil
	}
	if status != TaskStopped {
		if err := g.api.KillTask(ctx, ns, id); err != nil && !isNotFound(err) {
			return fmt.Errorf("killing the task of container %s in namespace %s: %w", id, ns, err)
		}
	}
	if err := g.api.DeleteTask(ctx, ns, id); err != nil && !isNotFound(err) {
		return fmt.Errorf("deleting the task of container %s in namespace %s: %w", id, ns, err)
	}
	return nil
}

// reapTask ends the task of container id if it has one although the
// container no longer exists (in enforce mode): what a deletion racing the
// task's creation leaves, with its shim and runc init; no client can
// manage it any more. The caller holds the container's lock, so that the
// stand-in container the reap makes is not judged meanwhile. A task's
// /tasks/create event may come before containerd lists the task: the
// event path waits up to wait for it to show.
func (g *Guard) reapTask(ctx context.Context, ns, id string, wait time.Duration) {
	if p := g.policies.Current(); p == nil || p.Mode != policy.ModeEnforce {
		return
	}
	for deadline := time.Now().Add(wait); ; {
		tasks, err := g.api.Tasks(ctx, ns)
		if err != nil {
			return
		}
		if slices.Contains(tasks, id) {
			break
		}
		if time.Now().After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	log := g.log.WithFields(logrus.Fields{"namespace": ns, "container": id})
	switch err := g.api.ReapTask(ctx, ns, id); {
	case errdefs.IsAlreadyExists(err):
		return // the container exists again: its task is its own
	case err != nil:
		log.WithError(err).Warn("containerd: cannot end the task of a container that no longer exists")
		return
	}
	log.Info("containerd: ended the task of a container that no longer exists")
}

// lateTaskWait bounds how long a /tasks/create event of a container that
// is gone waits for its task to be listed.
const lateTaskWait = time.Second

// reapOrphans reaps the tasks listed (before the containers were) whose
// container is not among the live ones.
func (g *Guard) reapOrphans(ctx context.Context, ns string, tasks []string, live map[string]bool) {
	for _, id := range tasks {
		if !live[ns+"\x00"+id] {
			key := "c\x00" + ns + "\x00" + id
			g.locks.Lock(key)
			if _, err := g.api.Container(ctx, ns, id); isNotFound(err) {
				g.reapTask(ctx, ns, id, 0)
			}
			g.locks.Unlock(key)
		}
	}
}
