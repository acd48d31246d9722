package docker

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/policy"
)

// Scan lists every denied image name and container on the host under p, as
// of now, without acting: it runs the guard's own reconcile with an
// executor that only reports what enforce mode would do, so that scan and
// the daemon cannot disagree. Containers come first, then images, in
// Docker's listing order. It is what `pullguard scan` prints. judge answers
// for signed-by rules and where content came from (nil: signed-by rules
// deny, provenance on dockerd's containerd image store is undecided); what
// could not be told is listed as failed, as the guard reports it.
//
// Plugins, which the reconcile also judges, are not findings of a scan.
func Scan(ctx context.Context, api API, p *policy.Policy, now time.Time, judge *evidence.Judge) ([]enforcer.Finding, error) {
	var mu sync.Mutex
	var records []enforcer.Record
	rep := enforcer.ReporterFunc(func(r enforcer.Record) {
		mu.Lock()
		defer mu.Unlock()
		if r.Plugin == "" {
			records = append(records, r)
		}
	})
	log := logrus.New()
	log.SetOutput(io.Discard)
	// One worker: the reconcile's steps then report in the order they are
	// planned, and a scan's output is the same from run to run.
	g := New(api, staticPolicy{p}, rep, log, WithClock(func() time.Time { return now }), WithWorkers(1), WithEvidence(judge))
	g.exec.DryRun = true
	if err := g.reconcile(ctx, "scan"); err != nil {
		return nil, err
	}
	return findings(ctx, g, p, now, records)
}

// findings turns a dry run's records into what scan prints, adding what a
// record does not carry: a container's name and state, and which allowed
// repository digest vouches for an image's content.
func findings(ctx context.Context, g *Guard, p *policy.Policy, now time.Time, records []enforcer.Record) ([]enforcer.Finding, error) {
	containers := map[string]Container{}
	if len(records) > 0 {
		list, err := g.api.ListContainers(ctx)
		if err != nil {
			return nil, err
		}
		for _, c := range list {
			containers[c.ID] = c
		}
	}
	vouchedBy := map[string]string{} // image ID -> allowed repository digest
	out := make([]enforcer.Finding, 0, len(records))
	for _, r := range records {
		f := enforcer.Finding{Runtime: enforcer.RuntimeDocker, Kind: enforcer.FindingImage, ImageID: r.ImageID,
			Reference: r.Decision.Input, Decision: r.Decision, Action: r.Action}
		if r.Err != nil {
			f.Note = r.Err.Error()
		}
		switch {
		case r.Image == "" && r.ContainerID != "":
			c := containers[r.ContainerID]
			f.Kind, f.ContainerID, f.ContainerName, f.ContainerState = enforcer.FindingContainer, r.ContainerID, c.Name, c.State
		case r.ContainerID != "":
			// A name left because a container that stays uses the image.
			f.Note = "in use by container " + shortID(r.ContainerID)
		}
		// A name left undecided has no provenance to show, and its
		// registry is not asked twice.
		if f.Kind == enforcer.FindingImage && (r.Action != enforcer.Failed || errors.Is(r.Err, ErrWouldRemoveAllowed)) {
			v, ok := vouchedBy[r.ImageID]
			if !ok {
				if img, err := g.api.InspectImage(ctx, r.ImageID); err == nil {
					v = planImage(img, p, now, nil, g.pass(ctx)).VouchedBy
				}
				vouchedBy[r.ImageID] = v
			}
			f.Provenance = v
		}
		out = append(out, f)
	}
	return out, nil
}

type staticPolicy struct{ p *policy.Policy }

func (s staticPolicy) Current() *policy.Policy { return s.p }
