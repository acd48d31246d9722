package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/policy"
)

// containerStep is what the policy asks about one disallowed container.
type containerStep struct {
	Container Container
	Verdict   verdict
	// Action is Removed (not running), Stopped (running, running: stop) or
	// Reported (running, running: keep).
	Action enforcer.Action
}

// imageStep is what the policy asks about one image with disallowed names.
type imageStep struct {
	Plan imagePlan
	// UsedBy lists the containers that stay and use the image. When the plan
	// would leave the image without names, Docker refuses to remove the last
	// one, so the image is left alone while they exist.
	UsedBy []string
}

// survey is a full pass over the host: every container and image the policy
// disallows, and what to do about each. It acts on nothing; the guard's
// reconcile carries it out (Scan: in a dry run).
type survey struct {
	Containers []containerStep
	Images     []imageStep
	// Counts, for logs.
	ImageCount, ContainerCount int
}

// takeSurvey lists the host's images and containers and judges them, asking
// ps what names cannot prove. Containers are judged first: an image stays
// in use only through the containers that stay.
func takeSurvey(ctx context.Context, api API, p *policy.Policy, now time.Time, ps *evidence.Pass) (*survey, error) {
	images, err := api.ListImages(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	containers, err := api.ListContainers(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	s := &survey{ImageCount: len(images), ContainerCount: len(containers)}
	byID := make(map[string]*Image, len(images))
	for i := range images {
		byID[images[i].ID] = &images[i]
	}

	usedBy := map[string][]string{} // image ID -> containers that stay
	for _, c := range containers {
		step, stays, err := judgeListed(ctx, api, c, byID, p, now, ps)
		if err != nil {
			return nil, err
		}
		if step != nil {
			s.Containers = append(s.Containers, *step)
		}
		if stays {
			usedBy[c.ImageID] = append(usedBy[c.ImageID], c.ID)
		}
	}

	for _, img := range images {
		plan := planImage(img, p, now, nil, ps)
		if len(plan.Removals) == 0 && plan.Failed == nil ||
			plan.isNameless() && len(usedBy[img.ID]) > 0 { // kept while an allowed container uses it
			continue
		}
		s.Images = append(s.Images, imageStep{Plan: plan, UsedBy: usedBy[img.ID]})
	}
	return s, nil
}

// judgeListed judges one listed container: the step to take (nil when it is
// allowed or already being removed) and whether it stays afterwards.
func judgeListed(ctx context.Context, api API, c Container, byID map[string]*Image, p *policy.Policy, now time.Time, ps *evidence.Pass) (*containerStep, bool, error) {
	img, err := imageOf(ctx, api, c.ImageID, byID)
	if err != nil {
		return nil, false, err
	}
	v := judgeContainer(c.Image, c.ImageID, img, p, now, ps)
	if !v.Allowed {
		// A listing shows the image ID where the name the container was
		// created from has moved on to a newer image (a re-pull); the name
		// as given is in the container's configuration, and may allow it.
		full, err := api.InspectContainer(ctx, c.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil, false, nil
		case err != nil:
			return nil, false, fmt.Errorf("inspecting container %s: %w", shortID(c.ID), err)
		}
		c.Image, c.State = full.Image, full.State
		v = judgeContainer(c.Image, c.ImageID, img, p, now, ps)
	}
	if v.Allowed {
		// Its own image may run; what it mounts must too (mounts.go).
		if v, _, err = judgeImageMounts(ctx, api, c.ImageMounts, byID, p, now, ps); err != nil || v.Allowed {
			return nil, err == nil, err
		}
	}
	step := &containerStep{Container: c, Verdict: v, Action: enforcer.Removed}
	switch {
	case v.Outcome == policy.Undecided:
		// No definite answer: the container stays (and keeps its image)
		// until one arrives.
		step.Action = enforcer.Failed
		return step, true, nil
	case c.State == "removing":
		return nil, false, nil
	case containerRunning(c.State) && p.Running == policy.RunningStop:
		step.Action = enforcer.Stopped
	case containerRunning(c.State):
		step.Action = enforcer.Reported
		return step, true, nil
	}
	return step, false, nil
}

// imageOf finds a container's image in a listing, or asks for it (it may
// be an intermediate image that listings leave out). nil: it is gone.
func imageOf(ctx context.Context, api API, id string, byID map[string]*Image) (*Image, error) {
	if img, ok := byID[id]; ok {
		return img, nil
	}
	if id == "" {
		return nil, nil
	}
	img, err := api.InspectImage(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("inspecting image %s: %w", shortID(id), err)
	}
	byID[id] = &img
	return &img, nil
}

// shortID is the 12-character form Docker prints.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
