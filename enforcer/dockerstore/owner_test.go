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
	lists      int
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
		plugins:    []dockerguard.Plugin{{ID: "plug1", Enabled: true}, {ID: "plug2"}},
	}
	o, c := newTestOwner(d)
	since := c.t.Add(-time.Second)
	for _, tt := range []struct {
		ns, id  string
		running bool
		want    cdguard.Ownership
	}{
		{"moby", "run1", true, cdguard.Owned},
		{"moby", "made1", false, cdguard.Owned},          // created, not started: Docker's
		{"moby", "ctr1", true, cdguard.NotOwned},         // dockerd has no such container
		{"moby", "plug1", true, cdguard.NotOwned},        // a plugin's ID is no container's
		{"plugins.moby", "plug1", true, cdguard.Owned},   // an enabled plugin
		{"plugins.moby", "run1", true, cdguard.NotOwned}, // a container's ID is no plugin's
		{"plugins.moby", "ctr2", false, cdguard.NotOwned},
	} {
		if got := o.Container(ctx, tt.ns, tt.id, tt.running, since); got != tt.want {
			t.Errorf("%s %s (running %v): %v, want %v", tt.ns, tt.id, tt.running, got, tt.want)
		}
	}
	if d.lists != 2 {
		t.Errorf("dockerd was asked %d times, want once a namespace: listings made after since answer", d.lists)
	}
	// A container that appeared since the last listing is asked about again.
	d.containers = append(d.containers, dockerguard.Container{ID: "new1", State: "running"})
	c.t = c.t.Add(time.Second)
	if got := o.Container(ctx, "moby", "new1", true, c.t); got != cdguard.Owned {
		t.Errorf("a container dockerd created since the last listing: %v, want owned", got)
	}
}

// TestOwnerSquat: a task running under the ID of a Docker container that
// dockerd does not run (created, never started) is unknown while dockerd
// may be starting it, and another client's after that.
func TestOwnerSquat(t *testing.T) {
	ctx := context.Background()
	d := &fakeDocker{containers: []dockerguard.Container{{ID: "made1", State: "created"}, {ID: "made2", State: "created"}},
		plugins: []dockerguard.Plugin{{ID: "plug2"}}}
	o, c := newTestOwner(d)
	for _, k := range [][2]string{{"moby", "made1"}, {"plugins.moby", "plug2"}} {
		if got := o.Container(ctx, k[0], k[1], true, c.t); got != cdguard.OwnerUnknown {
			t.Errorf("%s: %v, want unknown while dockerd may be starting it", k, got)
		}
	}
	c.t = c.t.Add(startGrace / 2)
	d.containers[1].State = "running" // dockerd's start of made2 returned
	if got := o.Container(ctx, "moby", "made2", true, c.t); got != cdguard.Owned {
		t.Errorf("made2 once dockerd says it runs: %v, want owned", got)
	}
	c.t = c.t.Add(startGrace)
	for _, k := range [][2]string{{"moby", "made1"}, {"plugins.moby", "plug2"}} {
		if got := o.Container(ctx, k[0], k[1], true, c.t); got != cdguard.NotOwned {
			t.Errorf("%s after %v: %v, want another client's", k, startGrace, got)
		}
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
	d := &fakeDocker{containers: []dockerguard.Container{{ID: "run1", State: "running"}}, down: true}
	o, c := newTestOwner(d)
	if got := o.Container(ctx, "moby", "run1", true, c.t); got != cdguard.OwnerUnknown {
		t.Errorf("dockerd down: %v, want unknown", got)
	}
	if got := o.Images(ctx, "moby"); got != cdguard.OwnerUnknown {
		t.Errorf("dockerd down, store never known: %v, want unknown", got)
	}
	c.t = c.t.Add(downGrace)
	if got := o.Container(ctx, "moby", "run1", true, c.t); got != cdguard.NotOwned {
		t.Errorf("dockerd down for %v: %v, want nobody's", downGrace, got)
	}
	d.down = false
	c.t = c.t.Add(time.Second)
	if got := o.Container(ctx, "moby", "run1", true, c.t); got != cdguard.Owned {
		t.Errorf("dockerd back: %v, want owned", got)
	}
}
