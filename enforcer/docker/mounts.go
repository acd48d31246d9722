package docker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/policy"
)

// Image mounts (API 1.48 and later: Docker 28, 29). `docker run --mount
// type=image,source=S,target=/x IMAGE` mounts image S's file system into a
// container: content that runs as surely as IMAGE's, so a container is
// allowed only if its image and every image it mounts may stay and run.
// The authorization plugin refuses such a create (enforcer/authz); this is
// the guard after the fact, at the container's create and start events and
// at every reconcile, for a host without the plugin or a container made
// while pullguard was down. A container --volumes-from another copies its
// image mounts, and lists them as its own: they are judged the same way.
//
// Docker shows a mount's source as it was given (a name, a short or full
// ID, a digest reference) and resolves it once, at create; the guard
// resolves it again, as Docker does. Docker refuses to delete an image a
// container mounts, so a source given by ID keeps naming the content
// mounted. A source given by a name that has since moved to other content
// (a pull of the same tag) is judged by the content it names now: at the
// create event that is the content mounted; a container created while
// pullguard was down under a name moved since is the one case judged by
// other content than its own. A source that no longer resolves at all is
// disallowed: what is mounted cannot be judged.

// ImageMount is one image mount of a container.
type ImageMount struct {
	// Source is the image as the mount gave it.
	Source string
	// Target is where it is mounted in the container.
	Target string
}

// imageMountsOf is a container's image mounts from what Docker shows of
// them: its mount points (listing and inspection, volumes-from included)
// and, when inspected, the mounts it was created with.
func imageMountsOf(points []container.MountPoint, hc *container.HostConfig) []ImageMount {
	var out []ImageMount
	add := func(m ImageMount) {
		for _, o := range out {
			if o == m {
				return
			}
		}
		out = append(out, m)
	}
	for _, mp := range points {
		if mp.Type == mount.TypeImage && mp.Name != "" {
			add(ImageMount{Source: mp.Name, Target: mp.Destination})
		}
	}
	if hc != nil {
		for _, m := range hc.Mounts {
			if m.Type == mount.TypeImage && m.Source != "" {
				add(ImageMount{Source: m.Source, Target: m.Target})
			}
		}
	}
	return out
}

// reasonMountGone is why a mount whose source no longer resolves is
// disallowed.
const reasonMountGone = "the image mounted from it is no longer known by that name, so the content mounted cannot be judged"

// judgeImageMounts judges the images mounted: allowed when each may stay
// and run; otherwise the verdict of the first that may not (its reason
// says where it is mounted) and its image ID. byID caches the images
// looked up in this pass; ps answers what names cannot prove.
func judgeImageMounts(ctx context.Context, api API, mounts []ImageMount, byID map[string]*Image, p *policy.Policy, now time.Time, ps *evidence.Pass) (verdict, string, error) {
	for _, m := range mounts {
		img, err := api.InspectImage(ctx, m.Source)
		switch {
		case errors.Is(err, ErrNotFound):
			d := policy.Decision{Input: m.Source, Reason: reasonMountGone + mountedAt(m), PolicyHash: p.Hash}
			return verdict{Outcome: policy.Denied, Decision: d}, "", nil
		case err != nil:
			return verdict{}, "", fmt.Errorf("inspecting image %s mounted at %s: %w", m.Source, m.Target, err)
		}
		cached, ok := byID[img.ID]
		if !ok {
			cached = &img
			byID[img.ID] = cached
		}
		if v := judgeContainer(m.Source, img.ID, cached, p, now, ps); !v.Allowed {
			v.Decision.Reason += mountedAt(m)
			return v, img.ID, nil
		}
	}
	return verdict{Allowed: true, Outcome: policy.Allowed}, "", nil
}

func mountedAt(m ImageMount) string {
	return " (an image mount of the container, at " + m.Target + ")"
}

// enforceImageMounts removes a container, created or started, whose image
// its own is allowed but which mounts an image the policy does not allow:
// as for its own image at these events, with force whatever running:
// says. It runs under the container's lock (handleContainer).
func (g *Guard) enforceImageMounts(ctx context.Context, p *policy.Policy, c Container, event string) {
	if len(c.ImageMounts) == 0 {
		return
	}
	v, mountedID, err := judgeImageMounts(ctx, g.api, c.ImageMounts, map[string]*Image{}, p, g.now(), g.pass(ctx))
	if err != nil {
		g.log.WithFields(logrus.Fields{"event": event, "container_id": c.ID, "error": err}).Error("cannot inspect an image the container mounts")
		return
	}
	if v.Allowed {
		return
	}
	rec := enforcer.Record{Action: enforcer.Removed, Event: event, ContainerID: c.ID, ImageID: mountedID, Decision: v.Decision}
	g.removeAtEvent(ctx, p, c, v, rec, func(prev *policy.Policy) bool { return g.mountsAllowedBy(ctx, prev, c) })
}

// mountsAllowedBy tells whether policy prev allows every image c mounts:
// whether a removal planned under a policy just reloaded waits for it to
// settle.
func (g *Guard) mountsAllowedBy(ctx context.Context, prev *policy.Policy, c Container) bool {
	if len(c.ImageMounts) == 0 {
		return true
	}
	v, _, err := judgeImageMounts(ctx, g.api, c.ImageMounts, map[string]*Image{}, prev, g.now(), g.pass(ctx))
	return err == nil && v.Allowed
}
