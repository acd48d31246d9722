package policysource

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/policy"
)

// The artifact's format: an OCI 1.1 artifact manifest (an image manifest
// with artifactType and the empty config), one layer per file, each named
// by its path in the org.opencontainers.image.title annotation. That is
// ORAS's own layout, so `oras pull` writes the files out as they were, and
// it carries nothing but regular files: no link, device or mode can be
// expressed, so none has to be refused on the way in.
const (
	// ArtifactType identifies a pullguard policy artifact.
	ArtifactType = "application/vnd.pullguard.policy.v1"
	// FileMediaType is each file's layer: a policy file, a drop-in or a key.
	FileMediaType types.MediaType = "application/vnd.pullguard.policy.file.v1"
	// MainFile is the policy's main file in the artifact; drop-ins are
	// policy.d/*.yaml beside it, as on a host.
	MainFile = "policy.yaml"
	// titleAnnotation names a layer's file (OCI and ORAS).
	titleAnnotation = "org.opencontainers.image.title"
)

// emptyConfig is the OCI empty descriptor's content.
var emptyConfig = []byte("{}")

// Limits on an artifact, checked when it is packed and, from the manifest
// alone before anything is downloaded, when it is fetched: a registry, or
// whoever can push to it, must not fill the state directory.
const (
	maxFiles      = 256
	maxFileSize   = 16 << 20 // the policy loader's limit for one file
	maxTotalSize  = 64 << 20
	maxManifest   = 4 << 20
	maxPathLength = 255
)

// errMalformed wraps every reason an artifact is not a policy artifact.
var errMalformed = errors.New("not a valid pullguard policy artifact")

// file is one file of an artifact.
type file struct {
	path string // slash-separated, relative
	data []byte
}

// checkPath refuses a file name that is not a plain relative path below
// the artifact's root: absolute, "..", empty or hidden components (hidden
// names are the state directory's own), backslashes.
func checkPath(p string) error {
	switch {
	case p == "" || len(p) > maxPathLength:
		return fmt.Errorf("file name %q: empty or longer than %d bytes", p, maxPathLength)
	case strings.ContainsAny(p, "\\\x00"):
		return fmt.Errorf("file name %q: backslash or NUL", p)
	case path.IsAbs(p) || !filepath.IsLocal(p) || path.Clean(p) != p:
		return fmt.Errorf("file name %q: not a plain relative path below the artifact's root", p)
	}
	for _, c := range strings.Split(p, "/") {
		if strings.HasPrefix(c, ".") {
			return fmt.Errorf("file name %q: hidden names are not carried", p)
		}
	}
	return nil
}

// checkFiles checks a whole artifact's file list: names, no name both a
// file and a directory, the main file present, the limits.
func checkFiles(paths []string, sizes []int64) error {
	if len(paths) > maxFiles {
		return fmt.Errorf("%d files, more than %d", len(paths), maxFiles)
	}
	seen := map[string]bool{}
	var total int64
	for i, p := range paths {
		if err := checkPath(p); err != nil {
			return err
		}
		if seen[p] {
			return fmt.Errorf("file %s appears twice", p)
		}
		seen[p] = true
		if sizes[i] < 0 || sizes[i] > maxFileSize {
			return fmt.Errorf("file %s: %d bytes, more than %d", p, sizes[i], maxFileSize)
		}
		total += sizes[i]
	}
	if total > maxTotalSize {
		return fmt.Errorf("%d bytes in all, more than %d", total, maxTotalSize)
	}
	for p := range seen {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if seen[d] {
				return fmt.Errorf("%s is both a file and a directory", d)
			}
		}
	}
	if !seen[MainFile] {
		return fmt.Errorf("no %s at the artifact's root", MainFile)
	}
	return nil
}

// readDir packs dir: every regular file below it except hidden ones, in
// lexical order. A link or special file is an error: the artifact carries
// file content only, and a link followed here would pack something from
// outside dir.
func readDir(dir string) ([]file, error) {
	var files []file
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s is not a regular file (a link or special file): the artifact carries file content only", p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files = append(files, file{path: filepath.ToSlash(rel), data: data})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	paths, sizes := make([]string, len(files)), make([]int64, len(files))
	for i, f := range files {
		paths[i], sizes[i] = f.path, int64(len(f.data))
	}
	if err := checkFiles(paths, sizes); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return files, nil
}

// manifestFor is the artifact manifest of files. It holds no time stamp:
// the same files make the same digest, so pushing a directory again under
// another tag names the content (and the signature) already there.
func manifestFor(files []file) ([]byte, error) {
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config:        descriptorOf(types.MediaType("application/vnd.oci.empty.v1+json"), emptyConfig, nil),
		Layers:        make([]v1.Descriptor, len(files)),
	}
	m.Config.Data = emptyConfig
	for i, f := range files {
		m.Layers[i] = descriptorOf(FileMediaType, f.data, map[string]string{titleAnnotation: f.path})
	}
	return json.Marshal(m)
}

func descriptorOf(mt types.MediaType, data []byte, annotations map[string]string) v1.Descriptor {
	sum := sha256.Sum256(data)
	return v1.Descriptor{MediaType: mt, Size: int64(len(data)),
		Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, Annotations: annotations}
}

// rawManifest is a manifest to put at a registry as it is.
type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// Push packs dir (its policy.yaml, policy.d/ drop-ins and the key files
// they name, every regular file below it but hidden ones) into a policy
// artifact and pushes it to target (oci://REGISTRY/REPO:TAG). The policy
// is loaded first with the daemon's strict loader (file permissions
// aside: dir is a workstation's checkout, not a host's /etc): an invalid
// policy is never pushed. It returns the manifest digest, what cosign
// signs.
func Push(ctx context.Context, reg *registry.Client, dir, target string) (string, error) {
	ref, err := ParseRef(reg, target)
	if err != nil {
		return "", err
	}
	tag, ok := ref.(name.Tag)
	if !ok {
		return "", fmt.Errorf("%s: push to a tag (oci://REGISTRY/REPO:TAG); the digest is the content's", target)
	}
	// Absolute, so that the key paths the loader makes from it are too.
	if dir, err = filepath.Abs(dir); err != nil {
		return "", err
	}
	p, err := policy.Load(filepath.Join(dir, MainFile), policy.LoadOptions{InsecurePermissions: true})
	if err != nil {
		return "", fmt.Errorf("the policy in %s does not load; nothing was pushed:\n%w", dir, err)
	}
	if err := keysInside(p, dir); err != nil {
		return "", err
	}
	files, err := readDir(dir)
	if err != nil {
		return "", err
	}
	raw, err := manifestFor(files)
	if err != nil {
		return "", err
	}
	opts := reg.Options(ctx)
	blobs := [][]byte{emptyConfig}
	for _, f := range files {
		blobs = append(blobs, f.data)
	}
	for _, b := range blobs {
		if err := remote.WriteLayer(tag.Context(), static.NewLayer(b, FileMediaType), opts...); err != nil {
			return "", fmt.Errorf("pushing to %s: %w", tag.Context(), err)
		}
	}
	if err := remote.Put(tag, rawManifest(raw), opts...); err != nil {
		return "", fmt.Errorf("pushing %s: %w", tag, err)
	}
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// keysInside refuses a policy whose signed-by keys are not files of dir:
// a key named by an absolute path, or one outside dir, would be read from
// each host's disk rather than from the signed artifact.
func keysInside(p *policy.Policy, dir string) error {
	for _, r := range p.Allow {
		if r.SignedBy == nil {
			continue
		}
		for _, k := range r.SignedBy.Keys {
			if rel, err := filepath.Rel(dir, k.Path); err != nil || !filepath.IsLocal(rel) {
				return fmt.Errorf("%s:%d: key %s is outside %s; nothing was pushed: put the key in the directory and name it by a relative path, so that it travels in the signed artifact",
					k.Source.File, k.Source.Line, k.Path, dir)
			}
		}
	}
	return nil
}

// parseManifest checks that raw, whose digest is digest, is a pullguard
// policy artifact within the limits, and returns it.
func parseManifest(raw []byte, digest string) (*v1.Manifest, error) {
	if len(raw) > maxManifest {
		return nil, fmt.Errorf("%w: manifest of %d bytes, more than %d", errMalformed, len(raw), maxManifest)
	}
	if sum := sha256.Sum256(raw); "sha256:"+hex.EncodeToString(sum[:]) != digest {
		return nil, fmt.Errorf("%w: the manifest does not match its digest %s", errMalformed, digest)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if m.MediaType != types.OCIManifestSchema1 || (m.ArtifactType != ArtifactType && string(m.Config.MediaType) != ArtifactType) {
		return nil, fmt.Errorf("%w: media type %q, artifact type %q (want an OCI manifest of artifact type %s, as `pullguard policy push` makes)",
			errMalformed, m.MediaType, m.ArtifactType, ArtifactType)
	}
	paths, sizes := make([]string, len(m.Layers)), make([]int64, len(m.Layers))
	for i, l := range m.Layers {
		if l.MediaType != FileMediaType {
			return nil, fmt.Errorf("%w: layer %d has media type %q, want %s", errMalformed, i, l.MediaType, FileMediaType)
		}
		if l.Digest.Algorithm != "sha256" {
			return nil, fmt.Errorf("%w: layer %d: digest algorithm %q", errMalformed, i, l.Digest.Algorithm)
		}
		paths[i], sizes[i] = l.Annotations[titleAnnotation], l.Size
	}
	if err := checkFiles(paths, sizes); err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	return m, nil
}

// readBlob reads one layer's content, no more than its descriptor says,
// and checks it against its digest.
func readBlob(r io.Reader, d v1.Descriptor) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, d.Size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != d.Size {
		return nil, fmt.Errorf("%w: %s: %d bytes, the manifest says %d", errMalformed, d.Annotations[titleAnnotation], len(data), d.Size)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != d.Digest.Hex {
		return nil, fmt.Errorf("%w: %s does not match its digest %s", errMalformed, d.Annotations[titleAnnotation], d.Digest)
	}
	return data, nil
}
