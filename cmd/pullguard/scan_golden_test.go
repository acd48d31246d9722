package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	cdguard "github.com/pullguard/pullguard/enforcer/containerd"
	dockerguard "github.com/pullguard/pullguard/enforcer/docker"
)

// TestScanGolden: `pullguard scan --output json` over a Docker (on the
// containerd image store) and a containerd holding allowed, denied and
// undecided images and containers prints exactly testdata/scan-json.golden
// (go test ./cmd/pullguard -run TestScanGolden -update rewrites it). Allowed
// content is served by a registry on the loopback; 127.0.0.1:1 is a
// registry that never answers, so what only it could vouch for is undecided.
func TestScanGolden(t *testing.T) {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	reg := strings.TrimPrefix(srv.URL, "http://")
	served := pushEmpty(t, reg+"/approved/app:1")
	const mute = "127.0.0.1:1"

	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	src := fmt.Sprintf("mode: enforce\nrunning: keep\nlocal-images: deny\nallow:\n  - image: %s/approved/**\n  - image: %s/approved/**\n", reg, mute)
	if err := os.WriteFile(pol, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}

	// Docker 29 on its containerd image store: repository digests prove
	// nothing, so every allowed name is asked about.
	d := &fakeDocker{}
	d.images = []dockerguard.Image{
		{ID: served, RepoTags: []string{reg + "/approved/app:1", "evil.example/alias:1"}, RepoDigests: []string{reg + "/approved/app@" + served}, InContainerd: true},
		{ID: fakeID('2'), RepoTags: []string{"evil.example/miner:1"}, RepoDigests: []string{"evil.example/miner@" + fakeID('2')}, InContainerd: true},
		{ID: fakeID('3'), RepoTags: []string{"evil.example/old:1"}, InContainerd: true},
		{ID: fakeID('4'), RepoTags: []string{mute + "/approved/late:1"}, RepoDigests: []string{mute + "/approved/late@" + fakeID('4')}, InContainerd: true},
	}
	d.containers = []dockerguard.Container{
		{ID: fakeID('a')[7:], Name: "miner", Image: "evil.example/miner:1", ImageID: fakeID('2'), State: "running"},
		{ID: fakeID('b')[7:], Name: "old", Image: "evil.example/old:1", ImageID: fakeID('3'), State: "exited"},
		{ID: fakeID('c')[7:], Name: "app", Image: reg + "/approved/app:1", ImageID: served, State: "running"},
		{ID: fakeID('d')[7:], Name: "late", Image: mute + "/approved/late:1", ImageID: fakeID('4'), State: "running"},
	}
	c := &fakeContainerd{ns: "k8s.io"}
	c.images = []cdguard.Image{
		{Name: reg + "/approved/app:1", Target: served},
		{Name: reg + "/approved/imported:1", Target: fakeID('5')}, // the registry never served it
		{Name: "evil.example/miner:2", Target: fakeID('6')},
		{Name: mute + "/approved/other:1", Target: fakeID('7')},
	}
	c.containers = []cdguard.Container{
		{ID: "miner", Image: "evil.example/miner:2", SnapshotKey: "miner"},
		{ID: "app", Image: reg + "/approved/app:1", SnapshotKey: "app"},
		{ID: "other", Image: mute + "/approved/other:1", SnapshotKey: "other"},
	}
	swapRuntimes(t, d, c)

	code, out, stderr := pullguard(t, "", "scan", "--policy", pol, "--docker-host", "unix:///fake/docker.sock",
		"--containerd-address", "/fake/containerd.sock", "--output", "json")
	if code != 1 {
		t.Errorf("exit status %d, want 1 (denied things found); stderr:\n%s", code, stderr)
	}
	if d.acted != nil || c.acted != nil {
		t.Errorf("scan acted: docker %q, containerd %q", d.acted, c.acted)
	}
	golden(t, "scan-json", strings.ReplaceAll(out, reg, "REGISTRY"))
}

// pushEmpty pushes an empty image to ref and returns its digest.
func pushEmpty(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, empty.Image); err != nil {
		t.Fatal(err)
	}
	dg, err := empty.Image.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return dg.String()
}

func fakeID(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }

// swapRuntimes has scan connect to d and c for the rest of the test.
func swapRuntimes(t *testing.T, d *fakeDocker, c *fakeContainerd) {
	oldD, oldC := newDockerAPI, newContainerdAPI
	newDockerAPI = func(string) (dockerguard.API, error) { return d, nil }
	newContainerdAPI = func(string) (cdguard.API, error) { return c, nil }
	t.Cleanup(func() { newDockerAPI, newContainerdAPI = oldD, oldC })
}

// errActed is what the fakes answer a request that would change the host:
// scan must never make one.
var errActed = errors.New("fake runtime: scan must not act")

// fakeDocker is a dockerd that holds a fixed set of images and containers.
type fakeDocker struct {
	images     []dockerguard.Image
	containers []dockerguard.Container
	acted      []string
}

var _ dockerguard.API = (*fakeDocker)(nil)

func (f *fakeDocker) Ping(context.Context) (string, error) { return "1.52", nil }
func (f *fakeDocker) Events(ctx context.Context, _ time.Time) (<-chan dockerguard.Event, <-chan error) {
	return make(chan dockerguard.Event), make(chan error)
}
func (f *fakeDocker) ListImages(context.Context) ([]dockerguard.Image, error) { return f.images, nil }
func (f *fakeDocker) InspectImage(_ context.Context, ref string) (dockerguard.Image, error) {
	for _, img := range f.images {
		if img.ID == ref || strings.Contains(strings.Join(append(img.RepoTags, img.RepoDigests...), " ")+" ", ref+" ") {
			return img, nil
		}
	}
	return dockerguard.Image{}, dockerguard.ErrNotFound
}
func (f *fakeDocker) ImageIDOf(ctx context.Context, ref string) (string, error) {
	img, err := f.InspectImage(ctx, ref)
	return img.ID, err
}
func (f *fakeDocker) RemoveImageName(_ context.Context, n string) (bool, error) {
	f.acted = append(f.acted, "rmi "+n)
	return false, errActed
}
func (f *fakeDocker) RemoveImageNameOf(_ context.Context, n string) (string, bool, error) {
	f.acted = append(f.acted, "rmi "+n)
	return "", false, errActed
}
func (f *fakeDocker) UntaggedBetween(context.Context, string, time.Time, time.Time) string { return "" }
func (f *fakeDocker) ListContainers(context.Context) ([]dockerguard.Container, error) {
	return f.containers, nil
}
func (f *fakeDocker) InspectContainer(_ context.Context, id string) (dockerguard.Container, error) {
	for _, c := range f.containers {
		if c.ID == id {
			return c, nil
		}
	}
	return dockerguard.Container{}, dockerguard.ErrNotFound
}
func (f *fakeDocker) StopContainer(_ context.Context, id string) error {
	f.acted = append(f.acted, "stop "+id)
	return errActed
}
func (f *fakeDocker) RemoveContainer(_ context.Context, id string) error {
	f.acted = append(f.acted, "rm "+id)
	return errActed
}
func (f *fakeDocker) ContainerdImageStore(context.Context) (bool, error)        { return true, nil }
func (f *fakeDocker) ListPlugins(context.Context) ([]dockerguard.Plugin, error) { return nil, nil }
func (f *fakeDocker) DisablePlugin(_ context.Context, id string) error {
	f.acted = append(f.acted, "disable plugin "+id)
	return errActed
}
func (f *fakeDocker) RemovePlugin(_ context.Context, id string) error {
	f.acted = append(f.acted, "remove plugin "+id)
	return errActed
}

// fakeContainerd is a containerd with one namespace of image records and
// running containers.
type fakeContainerd struct {
	ns         string
	images     []cdguard.Image
	containers []cdguard.Container
	acted      []string
}

var _ cdguard.API = (*fakeContainerd)(nil)

func (f *fakeContainerd) Namespaces(context.Context) ([]string, error) { return []string{f.ns}, nil }
func (f *fakeContainerd) Images(context.Context, string) ([]cdguard.Image, error) {
	return f.images, nil
}
func (f *fakeContainerd) ImagesByTarget(_ context.Context, _, digest string) ([]cdguard.Image, error) {
	var out []cdguard.Image
	for _, img := range f.images {
		if img.Target == digest {
			out = append(out, img)
		}
	}
	return out, nil
}
func (f *fakeContainerd) Image(_ context.Context, _, n string) (cdguard.Image, error) {
	for _, img := range f.images {
		if img.Name == n {
			return img, nil
		}
	}
	return cdguard.Image{}, fmt.Errorf("image %q: not found", n)
}
func (f *fakeContainerd) DeleteImage(_ context.Context, _, n string) error {
	f.acted = append(f.acted, "delete image "+n)
	return errActed
}
func (f *fakeContainerd) Containers(context.Context, string) ([]cdguard.Container, error) {
	return f.containers, nil
}
func (f *fakeContainerd) Container(_ context.Context, _, id string) (cdguard.Container, error) {
	for _, c := range f.containers {
		if c.ID == id {
			return c, nil
		}
	}
	return cdguard.Container{}, fmt.Errorf("container %q: not found", id)
}
func (f *fakeContainerd) TaskStatus(context.Context, string, string) (cdguard.TaskStatus, error) {
	return cdguard.TaskRunning, nil
}
func (f *fakeContainerd) KillTask(_ context.Context, _, id string) error {
	f.acted = append(f.acted, "kill "+id)
	return errActed
}
func (f *fakeContainerd) DeleteTask(_ context.Context, _, id string) error {
	f.acted = append(f.acted, "delete task "+id)
	return errActed
}
func (f *fakeContainerd) DeleteContainer(_ context.Context, _, id string) error {
	f.acted = append(f.acted, "delete container "+id)
	return errActed
}
func (f *fakeContainerd) Tasks(context.Context, string) ([]string, error) {
	var ids []string
	for _, c := range f.containers {
		ids = append(ids, c.ID)
	}
	return ids, nil
}

func (f *fakeContainerd) ReapTask(_ context.Context, _, id string) error {
	f.acted = append(f.acted, "reap task "+id)
	return errActed
}

// ChainIDs and Snapshot: each container's snapshot was made from the image
// it names.
func (f *fakeContainerd) ChainIDs(_ context.Context, _, target string) ([]string, bool, error) {
	return []string{"chain-" + target}, true, nil
}
func (f *fakeContainerd) Snapshot(ctx context.Context, ns, _, key string) (cdguard.Snapshot, error) {
	c, err := f.Container(ctx, ns, key)
	if err != nil {
		return cdguard.Snapshot{}, err
	}
	img, err := f.Image(ctx, ns, c.Image)
	return cdguard.Snapshot{Name: key, Parent: "chain-" + img.Target}, err
}
func (f *fakeContainerd) Snapshots(context.Context, string, string) ([]cdguard.Snapshot, error) {
	return nil, nil
}
func (f *fakeContainerd) Subscribe(context.Context, ...string) (<-chan cdguard.Event, <-chan error) {
	return make(chan cdguard.Event), make(chan error)
}
func (f *fakeContainerd) Close() error { return nil }
