package containerd

import (
	"context"
	"encoding/json"

	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// rootPather reads the root path of a container's runtime spec: the file
// system it runs on when containerd mounted no snapshot for it, as with
// Docker's containers (dockerd mounts their root file system itself).
type rootPather interface {
	RootPath(ctx context.Context, ns, id string) (string, error)
}

var _ rootPather = (*remote)(nil)

func (r *remote) RootPath(ctx context.Context, ns, id string) (string, error) {
	c, err := r.c.ContainerService().Get(namespaces.WithNamespace(ctx, ns), id)
	if err != nil {
		return "", err
	}
	if c.Spec == nil {
		return "", nil
	}
	var spec struct {
		Root *struct {
			Path string `json:"path"`
		} `json:"root"`
	}
	if err := json.Unmarshal(c.Spec.GetValue(), &spec); err != nil || spec.Root == nil {
		return "", nil
	}
	return spec.Root.Path, nil
}
