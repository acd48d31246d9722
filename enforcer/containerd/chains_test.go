package containerd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// blobs is a content store in memory.
type blobs map[digest.Digest][]byte

func (b blobs) add(t *testing.T, v any) digest.Digest {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dg := digest.FromBytes(raw)
	b[dg] = raw
	return dg
}

type blobReader struct{ *bytes.Reader }

func (blobReader) Close() error { return nil }

func (b blobs) ReaderAt(_ context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	raw, ok := b[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	return blobReader{bytes.NewReader(raw)}, nil
}

// The chain IDs of an index are those of its manifests whose configs are in
// the store, as containerd's unpacker names their top snapshots; a
// platform that was not pulled leaves the answer incomplete.
func TestChainIDs(t *testing.T) {
	store := blobs{}
	diffs := []digest.Digest{digest.FromString("layer1"), digest.FromString("layer2")}
	cfg := store.add(t, map[string]any{"rootfs": ocispec.RootFS{Type: "layers", DiffIDs: diffs}})
	manifest := store.add(t, ocispec.Manifest{Config: ocispec.Descriptor{Digest: cfg}})
	missing := digest.FromString("a manifest of another platform")
	index := store.add(t, ocispec.Index{Manifests: []ocispec.Descriptor{{Digest: manifest}, {Digest: missing}}})
	want := identity.ChainID(diffs).String()

	chains, complete, err := chainIDs(context.Background(), store, manifest)
	if err != nil || !complete || !slices.Equal(chains, []string{want}) {
		t.Errorf("manifest: %q complete=%v err=%v, want [%s] complete", chains, complete, err, want)
	}
	chains, complete, err = chainIDs(context.Background(), store, index)
	if err != nil || complete || !slices.Equal(chains, []string{want}) {
		t.Errorf("index: %q complete=%v err=%v, want [%s] incomplete", chains, complete, err, want)
	}
	chains, complete, err = chainIDs(context.Background(), store, missing)
	if err != nil || complete || len(chains) != 0 {
		t.Errorf("missing target: %q complete=%v err=%v, want nothing, incomplete", chains, complete, err)
	}
	garbage := digest.FromString("not json")
	store[garbage] = []byte("not json")
	if _, _, err := chainIDs(context.Background(), store, garbage); err == nil {
		t.Error("a blob that is not JSON: no error")
	}
}
