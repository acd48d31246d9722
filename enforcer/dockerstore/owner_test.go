package dockerstore

import (
	"context"
	"errors"
	"testing"
	"time"

	cdguard "github.com/pullguard/pullguard/enforcer/containerd"
	dockerguard "github.com/pullguard/pullguard/enforcer/docker"
)

// fakeDocker answers as dockerd does; down makes every call fail.
type fakeDocker struct {
	containers []dockerguard.Container
	plugins    []dockerguard.Plugin
	c8d        bool
	down       bool
	noStorage  bool // dockerd answers, but shows no storage for containers
	lists      int
	inspects   int
}

var errDown = errors.New("cannot connect to the Docker daemon")

func (f *fakeDocker) ListContainers(context.Context) ([]dockerguard.Container, error) {
	if f.down {
		return nil, errDown
	}
	f.lists++
	return f.containers, nil
}

func (f *fakeDocker) ListPlugins(context.Context) ([]dockerguard.Plugin, error) {
	if f.down {
		return nil, errDown
	}
	f.lists++
	return f.plugins, nil
}

func (f *fakeDocker) ContainerdImageStore(context.Context) (bool, error) {
	if f.down {
		return false, errDown
	}
	return f.c8d, nil
}

func (f *fakeDocker) ContainerRootFS(_ context.Context, id string) (string, error) {
	if f.down {
		return "", errDown
	}
	f.inspects++
	if f.noStorage {
		return "", errors.New("dockerd shows no storage")
	}
	for _, c := range f.containers {
		if c.ID == id {
			return "/var/lib/docker/overlay2/layer-" + id + "/merged", nil
		}
	}
	return "", dockerguard.ErrNotFound
}

func (f *fakeDocker) PluginRootFS(_ context.Context, id string) (string, error) {
	if f.down {
		return "", errDown
	}
	return "/var/lib/docker/plugins/" + id + "/rootfs", nil
}

// clock is a settable time for the owner's graces.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestOwner(d Docker) (*Owner, *clock) {
	o := NewOwner(d, quietLog())
	c := &clock{t: time.Unix(1_000_000, 0)}
	o.now = c.now
	return o, c
}

func TestOwnerContainers(t *testing.T) {
	ctx := context.Background()
	d := &fakeDocker{
		containers: []dockerguard.Container{{ID: "run1", State: "running"}, {ID: "made1", State: "created"}},
		plugins:    []dockerguard.Plugin{{ID: "plug1", Enabled: true}},
	}
	o, c := newTestOwner(d)
	since := c.t.Add(-time.Second)
	const run1Root = "/var/lib/docker/overlay2/layer-run1/merged"
	for _, tt := range []struct {
		name, ns, id, root string
		want               cdguard.Ownership
	}{
		{"Docker's container", "moby", "run1", run1Root, cdguard.Owned},
		{"the same path, spelled otherwise", "moby", "run1", run1Root + "/", cdguard.Owned},
		// dockerd adopts a task another client starts under its container's ID: the root
		// file system tells them apart.
		{"another root file system under Docker's ID", "moby", "made1", "rootfs", cdguard.NotOwned},
		{"a snapshot of its own under Docker's ID", "moby", "run1", "", cdguard.NotOwned},
		{"an ID dockerd does not have", "moby", "ctr1", run1Root, cdguard.NotOwned},
		{"a plugin's ID in moby", "moby", "plug1", "/var/lib/docker/plugins/plug1/rootfs", cdguard.NotOwned},
		{"Docker's plugin", "plugins.moby", "plug1", "/var/lib/docker/plugins/plug1/rootfs", cdguard.Owned},
		{"a plugin's ID, another root", "plugins.moby", "plug1", "rootfs", cdguard.NotOwned},
		{"a container's ID in plugins.moby", "plugins.moby", "run1", run1Root, cdguard.NotOwned},
	} {
		if got := o.Container(ctx, tt.ns, tt.id, tt.root, since); got != tt.want {
			t.Errorf("%s (%s %s on %q): %v, want %v", tt.name, tt.ns, tt.id, tt.root, got, tt.want)
		}
	}
	if d.lists != 2 || d.inspects != 2 {
		t.Errorf("dockerd was asked for %d listings and %d inspections, want 2 and 2: a listing made after since "+
			"answers, and a container's root file system is asked once", d.lists, d.inspects)
	}
	// A container that appeared since the last listing is asked about again.
	d.containers = append(d.containers, dockerguard.Container{ID: "new1", State: "running"})
	c.t = c.t.Add(time.Second)
	if got := o.Container(ctx, "moby", "new1", "/var/lib/docker/overlay2/layer-new1/merged", c.t); got != cdguard.Owned {
		t.Errorf("a container dockerd created since the last listing: %v, want owned", got)
	}
}

func TestOwnerImages(t *testing.T) {
	ctx := context.Background()
	d := &fakeDocker{c8d: true}
	o, c := newTestOwner(d)
	if got := o.Images(ctx, "moby"); got != cdguard.Owned {
		t.Errorf("moby on the containerd image store: %v, want owned", got)
	}
	if got := o.Images(ctx, "plugins.moby"); got != cdguard.NotOwned {
		t.Errorf("plugins.moby: %v, want nobody's (dockerd writes no records there)", got)
	}
	if !o.DockerImages() {
		t.Error("DockerImages on the containerd image store: false")
	}
	d2 := &fakeDocker{}
	o2, _ := newTestOwner(d2)
	if !o2.DockerImages() {
		t.Error("DockerImages before dockerd was asked: false, want a Docker reconcile in case")
	}
	if got := o2.Images(ctx, "moby"); got != cdguard.NotOwned {
		t.Errorf("moby on Docker's own image store: %v, want nobody's", got)
	}
	if o2.DockerImages() {
		t.Error("DockerImages on Docker's own image store: true")
	}
	// dockerd goes away: the last answer holds, until downGrace.
	d.down = true
	c.t = c.t.Add(storeFresh)
	if got := o.Images(ctx, "moby"); got != cdguard.Owned {
		t.Errorf("dockerd down, store known: %v, want owned", got)
	}
	c.t = c.t.Add(downGrace)
	if got := o.Images(ctx, "moby"); got != cdguard.NotOwned {
		t.Errorf("dockerd down for %v: %v, want nobody's", downGrace, got)
	}
	d.down = false
	c.t = c.t.Add(storeFresh)
	if got := o.Images(ctx, "moby"); got != cdguard.Owned {
		t.Errorf("dockerd back: %v, want owned", got)
	}
}

// TestOwnerDockerDown: while dockerd does not answer nothing can be told,
// until downGrace: then nothing in its namespaces is taken for Docker's.
func TestOwnerDockerDown(t *testing.T) {
	ctx := context.Background()
	const root = "/var/lib/docker/overlay2/layer-run1/merged"
	d := &fakeDocker{containers: []dockerguard.Container{{ID: "run1", State: "running"}}, down: true}
	o, c := newTestOwner(d)
	if got := o.Container(ctx, "moby", "run1", root, c.t); got != cdguard.OwnerUnknown {
		t.Errorf("dockerd down: %v, want unknown", got)
	}
	if got := o.Images(ctx, "moby"); got != cdguard.OwnerUnknown {
		t.Errorf("dockerd down, store never known: %v, want unknown", got)
	}
	c.t = c.t.Add(downGrace)
	if got := o.Container(ctx, "moby", "run1", root, c.t); got != cdguard.NotOwned {
		t.Errorf("dockerd down for %v: %v, want nobody's", downGrace, got)
	}
	d.down = false
	c.t = c.t.Add(time.Second)
	if got := o.Container(ctx, "moby", "run1", root, c.t); got != cdguard.Owned {
		t.Errorf("dockerd back: %v, want owned", got)
	}
}

// TestOwnerNoStorage: a dockerd that answers but does not say what its
// container runs on cannot vouch for it past downGrace either.
func TestOwnerNoStorage(t *testing.T) {
	ctx := context.Background()
	const root = "/var/lib/docker/overlay2/layer-run1/merged"
	d := &fakeDocker{containers: []dockerguard.Container{{ID: "run1", State: "running"}}, noStorage: true}
	o, c := newTestOwner(d)
	if got := o.Container(ctx, "moby", "run1", root, c.t); got != cdguard.OwnerUnknown {
		t.Errorf("no storage shown: %v, want unknown", got)
	}
	c.t = c.t.Add(downGrace)
	if got := o.Container(ctx, "moby", "run1", root, c.t); got != cdguard.NotOwned {
		t.Errorf("no storage shown for %v: %v, want nobody's", downGrace, got)
	}
	d.noStorage = false
	if got := o.Container(ctx, "moby", "run1", root, c.t); got != cdguard.Owned {
		t.Errorf("storage shown again: %v, want owned", got)
	}
}
