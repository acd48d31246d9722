package containerd

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxManifestBytes bounds what is read of one manifest, index or config:
// a socket user writes the content store, and a blob the size of a layer
// is not JSON the guard needs to decode.
const maxManifestBytes = 4 << 20

// chainIDs walks an image's index and manifests in the content store and
// returns the chain ID of every manifest whose config is there: the names
// containerd's unpacker gives the top snapshot of each platform. complete
// is false when something the index names is missing.
func chainIDs(ctx context.Context, store content.Provider, target digest.Digest) ([]string, bool, error) {
	var chains []string
	complete := true
	var walk func(dg digest.Digest, depth int) error
	walk = func(dg digest.Digest, depth int) error {
		var blob struct {
			Manifests []ocispec.Descriptor `json:"manifests"`
			Config    *ocispec.Descriptor  `json:"config"`
		}
		if err := readJSON(ctx, store, dg, &blob); err != nil {
			return err
		}
		if blob.Config != nil {
			var cfg struct {
				RootFS ocispec.RootFS `json:"rootfs"`
			}
			if err := readJSON(ctx, store, blob.Config.Digest, &cfg); err != nil {
				return err
			}
			chains = append(chains, identity.ChainID(cfg.RootFS.DiffIDs).String())
			return nil
		}
		if depth > 2 {
			return nil // an index of indexes of indexes is nothing containerd unpacks
		}
		for _, m := range blob.Manifests {
			switch err := walk(m.Digest, depth+1); {
			case errdefs.IsNotFound(err):
				complete = false // a platform that was not pulled
			case err != nil:
				return err
			}
		}
		return nil
	}
	if err := walk(target, 0); err != nil {
		if errdefs.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return chains, complete, nil
}

func readJSON(ctx context.Context, store content.Provider, dg digest.Digest, v any) error {
	ra, err := store.ReaderAt(ctx, ocispec.Descriptor{Digest: dg})
	if err != nil {
		return err
	}
	defer ra.Close()
	if ra.Size() > maxManifestBytes {
		return fmt.Errorf("blob %s: %d bytes, more than a manifest or config has", dg, ra.Size())
	}
	b := make([]byte, ra.Size())
	if n, err := ra.ReadAt(b, 0); n < len(b) {
		return fmt.Errorf("reading blob %s: %w", dg, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("blob %s: %w", dg, err)
	}
	return nil
}
