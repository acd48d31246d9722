package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/pullguard/pullguard/policy"
)

// Options describe the image.
type Options struct {
	Binary, CACerts string
	// TrustedRoot is the public-good Sigstore root the packages ship, for
	// keyless signers when the policy names no trusted-root.
	TrustedRoot  string
	Tag, Version string
	Arch         string
	// Created is every timestamp in the image (zero: the Unix epoch), so
	// the same inputs give the same image digest.
	Created time.Time
}

// The image's layout. /run/pullguard is where the status socket goes; on a
// read-only root file system the DaemonSet mounts an emptyDir there.
const (
	BinaryPath  = "/pullguard"
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	RunDir      = "/run/pullguard"
)

// Build assembles the image: from scratch, one layer.
func Build(o Options) (v1.Image, error) {
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0).UTC()
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, err
	}
	if !isStaticELF(bin) {
		return nil, fmt.Errorf("%s is not a static ELF binary (build it with CGO_ENABLED=0): a scratch image has no libc", o.Binary)
	}
	ca, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, err
	}
	root, err := os.ReadFile(o.TrustedRoot)
	if err != nil {
		return nil, err
	}
	layerTar, err := layerTarball(o.Created, []file{
		{path: "etc/", mode: 0o755, dir: true},
		{path: "etc/ssl/", mode: 0o755, dir: true},
		{path: "etc/ssl/certs/", mode: 0o755, dir: true},
		{path: CACertsPath[1:], mode: 0o644, data: ca},
		{path: BinaryPath[1:], mode: 0o755, data: bin},
		{path: "usr/", mode: 0o755, dir: true},
		{path: "usr/share/", mode: 0o755, dir: true},
		{path: "usr/share/pullguard/", mode: 0o755, dir: true},
		{path: policy.DefaultTrustedRoot[1:], mode: 0o644, data: root},
		{path: "run/", mode: 0o755, dir: true},
		{path: RunDir[1:] + "/", mode: 0o700, dir: true},
	})
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: o.Created},
			CreatedBy: "pullguard deploy/image: the static binary and CA certificates",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = o.Arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: o.Created}
	cf.Config = v1.Config{
		Entrypoint: []string{BinaryPath},
		Cmd:        []string{"daemon"},
		// root, for the runtimes' root-owned sockets; the DaemonSet drops
		// every capability, as the systemd unit does.
		User: "0:0",
		Env: []string{
			"SSL_CERT_FILE=" + CACertsPath,
			// No journald in a container: log JSON to stderr, which the
			// node's log collection picks up.
			"PULLGUARD_LOG_TARGET=stderr",
			"PULLGUARD_LOG_FORMAT=json",
		},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "pullguard",
			"org.opencontainers.image.description": "keeps container hosts on approved images",
			"org.opencontainers.image.version":     o.Version,
			"org.opencontainers.image.licenses":    "Apache-2.0",
		},
	}
	return mutate.ConfigFile(img, cf)
}

// Write builds the image and writes it to path as a tarball that docker
// load and ctr image import read, tagged o.Tag.
func Write(path string, o Options) error {
	tag, err := name.NewTag(o.Tag)
	if err != nil {
		return fmt.Errorf("-tag: %w", err)
	}
	img, err := Build(o)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

type file struct {
	path string
	mode int64
	dir  bool
	data []byte
}

func layerTarball(mtime time.Time, files []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.path, Mode: f.mode, ModTime: mtime, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// isStaticELF: an ELF executable that asks for no dynamic loader.
func isStaticELF(b []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return f.Type == elf.ET_EXEC || f.Type == elf.ET_DYN
}
