package main

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// staticBinary builds a small static Go binary (this command) to stand in
// for pullguard's.
func staticBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pullguard")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestImage(t *testing.T) {
	bin := staticBinary(t)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "image.tar")
	o := Options{Binary: bin, CACerts: ca, TrustedRoot: "../../packaging/trusted_root.json", Tag: "pullguard/pullguard:1.2.3", Version: "1.2.3", Arch: "amd64"}
	if err := Write(out, o); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(o.Tag)
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("the tarball does not load as %s: %v", o.Tag, err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1 (no base image)", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == "pullguard" && h.Mode != 0o755 {
			t.Errorf("/pullguard mode %o", h.Mode)
		}
	}
	want := []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt", "pullguard",
		"usr/", "usr/share/", "usr/share/pullguard/", "usr/share/pullguard/trusted_root.json", "run/", "run/pullguard/"}
	if !slices.Equal(names, want) {
		t.Errorf("layer holds %v, want exactly %v", names, want)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if !slices.Equal(c.Entrypoint, []string{"/pullguard"}) || !slices.Equal(c.Cmd, []string{"daemon"}) || c.User != "0:0" {
		t.Errorf("config: entrypoint %v cmd %v user %q", c.Entrypoint, c.Cmd, c.User)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if !slices.Contains(c.Env, "PULLGUARD_LOG_FORMAT=json") || !slices.Contains(c.Env, "PULLGUARD_LOG_TARGET=stderr") {
		t.Errorf("env %v: a container logs JSON to stderr", c.Env)
	}

	// The same inputs give the same image.
	d1, _ := img.Digest()
	img2, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := img2.Digest(); d1 != d2 {
		t.Errorf("two builds differ: %s, %s", d1, d2)
	}
}

func TestImageRefusesADynamicBinary(t *testing.T) {
	dyn, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(Options{Binary: dyn, CACerts: "/dev/null"})
	if err == nil || !strings.Contains(err.Error(), "not a static ELF") {
		t.Fatalf("Build with %s: %v, want a refusal", dyn, err)
	}
}
