package containerd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// leaseAPI is what the lease sweep (leases.go) asks of containerd beyond
// API. The containerd client has it; an API without it (a test's fake of
// the rest) sweeps nothing.
type leaseAPI interface {
	// Leases lists the namespace's leases with what each holds.
	Leases(ctx context.Context, ns string) ([]Lease, error)
	// ImageContent reads the image whose index or manifest has digest d:
	// every blob it names and its chain IDs. ok is false when d's blob is
	// not an index or a manifest, or cannot be read.
	ImageContent(ctx context.Context, ns, d string) (img LeasedImage, ok bool, err error)
	// Release drops resources from a lease, or the whole lease when it
	// holds nothing else, and has containerd collect garbage before it
	// returns: what no image record, container or other lease holds is
	// gone then.
	Release(ctx context.Context, ns string, lease string, rs []LeaseResource, whole bool) error
}

// Lease is a containerd lease and what it holds.
type Lease struct {
	ID        string
	Created   time.Time
	Labels    map[string]string
	Resources []LeaseResource
}

// LeaseResource is one thing a lease holds: Type "content" (ID a digest),
// "ingests" (a write in progress), or "snapshots/<snapshotter>" (ID the
// snapshot's key).
type LeaseResource struct {
	Type, ID string
	// Active: a snapshot that is not committed (an unpack in progress, a
	// container's writable layer).
	Active bool
}

// LeasedImage is an image's content as the content store holds it.
type LeasedImage struct {
	// Blobs are the index, manifests, configs and layers it names that
	// the store has.
	Blobs []string
	// Chains are the chain IDs of every prefix of each manifest's layers:
	// the names containerd's unpacker gives the snapshots it commits.
	Chains []string
}

var _ leaseAPI = (*remote)(nil)

func (r *remote) Leases(ctx context.Context, ns string) ([]Lease, error) {
	ctx = namespaces.WithNamespace(ctx, ns)
	ls := r.c.LeasesService()
	list, err := ls.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Lease, 0, len(list))
	for _, l := range list {
		rs, err := ls.ListResources(ctx, l)
		if errdefs.IsNotFound(err) {
			continue // gone meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("lease %s: %w", l.ID, err)
		}
		lease := Lease{ID: l.ID, Created: l.CreatedAt, Labels: l.Labels}
		for _, res := range rs {
			lr := LeaseResource{Type: res.Type, ID: res.ID}
			if sn, ok := strings.CutPrefix(res.Type, "snapshots/"); ok {
				info, err := r.c.SnapshotService(sn).Stat(ctx, res.ID)
				lr.Active = err == nil && info.Kind == snapshots.KindActive
			}
			lease.Resources = append(lease.Resources, lr)
		}
		out = append(out, lease)
	}
	return out, nil
}

func (r *remote) ImageContent(ctx context.Context, ns, d string) (LeasedImage, bool, error) {
	ctx = namespaces.WithNamespace(ctx, ns)
	dg, err := digest.Parse(d)
	if err != nil {
		return LeasedImage{}, false, nil
	}
	store := r.c.ContentStore()
	var img LeasedImage
	seen := map[digest.Digest]bool{}
	var walk func(dg digest.Digest, depth int) (bool, error)
	walk = func(dg digest.Digest, depth int) (bool, error) {
		var blob struct {
			Manifests []ocispec.Descriptor `json:"manifests"`
			Config    *ocispec.Descriptor  `json:"config"`
			Layers    []ocispec.Descriptor `json:"layers"`
		}
		if readJSON(ctx, store, dg, &blob) != nil || (blob.Config == nil && blob.Manifests == nil) || depth > 2 {
			return false, nil
		}
		add := func(d digest.Digest) {
			if !seen[d] {
				seen[d] = true
				img.Blobs = append(img.Blobs, d.String())
			}
		}
		add(dg)
		if blob.Config != nil {
			var cfg struct {
				RootFS ocispec.RootFS `json:"rootfs"`
			}
			if _, err := store.Info(ctx, blob.Config.Digest); err == nil {
				add(blob.Config.Digest)
			}
			for _, l := range blob.Layers {
				if _, err := store.Info(ctx, l.Digest); err == nil {
					add(l.Digest)
				}
			}
			if readJSON(ctx, store, blob.Config.Digest, &cfg) == nil {
				for _, c := range identity.ChainIDs(cfg.RootFS.DiffIDs) {
					img.Chains = append(img.Chains, c.String())
				}
			}
			return true, nil
		}
		for _, m := range blob.Manifests {
			if _, err := walk(m.Digest, depth+1); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	ok, err := walk(dg, 0)
	return img, ok, err
}

func (r *remote) Release(ctx context.Context, ns string, id string, rs []LeaseResource, whole bool) error {
	ctx = namespaces.WithNamespace(ctx, ns)
	ls := r.c.LeasesService()
	if whole {
		return ls.Delete(ctx, leases.Lease{ID: id}, leases.SynchronousDelete)
	}
	for _, res := range rs {
		if err := ls.DeleteResource(ctx, leases.Lease{ID: id}, leases.Resource{Type: res.Type, ID: res.ID}); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	// Dropping a resource does not collect garbage by itself; deleting a
	// lease synchronously does: an empty one made for that.
	tmp, err := ls.Create(ctx, leases.WithRandomID(), leases.WithExpiration(time.Minute))
	if err != nil {
		return err
	}
	return ls.Delete(ctx, tmp, leases.SynchronousDelete)
}
