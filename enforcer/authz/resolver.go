package authz

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// LocalImage is an image in Docker's local store.
type LocalImage struct {
	// ID is the image ID, sha256:<hex>.
	ID string
	// Names are the image's references: its tags, then its digests, as
	// Docker lists them (RepoTags, RepoDigests).
	Names []string
	// InContainerd: dockerd keeps the image in containerd (Docker 29's
	// containerd image store), where its repository digests are made from
	// its names and prove nothing about where the content came from
	// (enforcer/provenance's DockerNames).
	InContainerd bool
}

// ImageResolver finds the local image that a reference means to Docker: a
// name, a short or full image ID, or a digest reference. found is false
// when Docker has no such image; err is for failures to look.
type ImageResolver interface {
	ResolveImage(ctx context.Context, ref string) (img LocalImage, found bool, err error)
}

// ImageInspector is the one Docker API call DockerResolver needs;
// *client.Client has it.
type ImageInspector interface {
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
}

var (
	_ ImageInspector = (*client.Client)(nil)
	_ ImageResolver  = (*DockerResolver)(nil)
)

// DockerResolver resolves references with dockerd's image inspect call,
// which resolves them exactly as container creation and tagging do (a
// name first, then an ID prefix). Its calls pass through the authorization
// plugin too, as GETs, which the plugin allows without judging.
type DockerResolver struct {
	docker ImageInspector
}

// NewDockerResolver returns a resolver over a Docker API client.
func NewDockerResolver(docker ImageInspector) *DockerResolver {
	return &DockerResolver{docker: docker}
}

// ResolveImage implements ImageResolver.
func (r *DockerResolver) ResolveImage(ctx context.Context, ref string) (LocalImage, bool, error) {
	res, err := r.docker.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return LocalImage{}, false, nil
	}
	if err != nil {
		return LocalImage{}, false, fmt.Errorf("inspecting image %q: %w", ref, err)
	}
	// Only the containerd image store describes the image's target.
	img := LocalImage{ID: res.ID, Names: make([]string, 0, len(res.RepoTags)+len(res.RepoDigests)), InContainerd: res.Descriptor != nil}
	for _, lists := range [][]string{res.RepoTags, res.RepoDigests} {
		for _, n := range lists {
			// API versions before 1.24 listed "<none>:<none>" for an
			// image without names; it is not a name.
			if n != "" && n != "<none>:<none>" && n != "<none>@<none>" {
				img.Names = append(img.Names, n)
			}
		}
	}
	return img, true, nil
}
