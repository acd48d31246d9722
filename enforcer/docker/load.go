package docker

import (
	"context"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/policy"
)

// A docker load emits one event for the loaded image and none for the
// names it took: a name the tarball carries that another image had moves
// to the loaded content silently, and the image it left keeps only its
// repository digests. The load's image is judged like any other (under
// local-images: deny a name on loaded content has no provenance and goes);
// the image that lost the name is not touched (it has no tag to remove,
// and its repository digest, if allowed, keeps it allowed). movedNames
// says in the log which names moved, so that an operator sees that an
// approved name was taken over, not just that it was removed.
func (g *Guard) movedNames(ctx context.Context, p *policy.Policy, loadedID string) {
	loaded, err := g.api.InspectImage(ctx, loadedID)
	if err != nil {
		return
	}
	repos := map[string]bool{} // repositories of the loaded image's tags with no digest of the loaded image
	digested := map[string]bool{}
	for _, n := range namesOf(p, loaded) {
		if n.digest {
			digested[n.repo] = true
		}
	}
	for _, n := range namesOf(p, loaded) {
		if !n.digest && !digested[n.repo] {
			repos[n.repo] = true
		}
	}
	if len(repos) == 0 {
		return
	}
	imgs, err := g.api.ListImages(ctx)
	if err != nil {
		return
	}
	for _, img := range imgs {
		if img.ID == loaded.ID {
			continue
		}
		tagged := map[string]bool{}
		names := namesOf(p, img)
		for _, n := range names {
			if !n.digest {
				tagged[n.repo] = true
			}
		}
		for _, n := range names {
			// Pulled content of the repository that no longer has a tag
			// of it: where the loaded tag came from.
			if n.digest && repos[n.repo] && !tagged[n.repo] {
				for _, t := range namesOf(p, loaded) {
					if !t.digest && t.repo == n.repo {
						g.log.WithFields(logrus.Fields{"event": actionLoad, "name": t.norm,
							"image_id": loaded.ID, "previous_image_id": img.ID, "previous_digest": n.norm}).
							Warnf("docker load moved %s from image %s (pulled as %s) to the loaded image %s", t.norm, shortID(img.ID), n.norm, shortID(loaded.ID))
					}
				}
				break
			}
		}
	}
}

// checkImageStore finds which image store dockerd uses: its own, or
// containerd's (Docker 29's default). Which one chooses how a name denied
// outright is removed (removeDeniedName). On containerd's store every image
// record's name is listed with the record's target as a repository digest,
// whether the content was pulled, loaded or built (moby's
// daemon/containerd/image_inspect.go), so repository digests prove nothing;
// with a registry to ask the guard judges provenance as the containerd guard
// does (provenance.go); without one it can tell nothing, and says so.
func (g *Guard) checkImageStore(ctx context.Context) {
	c8d, err := g.api.ContainerdImageStore(ctx)
	if err != nil {
		g.log.WithError(err).Debug("cannot tell which image store dockerd uses")
		return
	}
	g.containerdStore.Store(c8d)
	if p := g.policies.Current(); c8d && g.judge == nil && p != nil && p.LocalImages == policy.LocalImagesDeny {
		g.log.Warn("dockerd keeps its images in containerd: its repository digests are made from image names, " +
			"and no registry is configured to ask where content came from, so local-images: deny cannot tell loaded or built content from pulled content there; images with allowed names are kept and reported failed")
	}
}
