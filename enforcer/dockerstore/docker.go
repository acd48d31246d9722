package dockerstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	dockerguard "github.com/pullguard/pullguard/enforcer/docker"
)

// Docker is what the owner asks dockerd.
type Docker interface {
	ListContainers(ctx context.Context) ([]dockerguard.Container, error)
	ListPlugins(ctx context.Context) ([]dockerguard.Plugin, error)
	ContainerdImageStore(ctx context.Context) (bool, error)
	// ContainerRootFS is the root file system dockerd gives container id:
	// the root path of the runtime spec it hands containerd. It wraps
	// dockerguard.ErrNotFound when dockerd has no such container.
	ContainerRootFS(ctx context.Context, id string) (string, error)
	// PluginRootFS is the same for plugin id.
	PluginRootFS(ctx context.Context, id string) (string, error)
}

// NewDocker is Docker over the Docker guard's API and a client of dockerd at
// host for what that API does not read (a container's storage, dockerd's
// data root).
func NewDocker(api dockerguard.API, host string) (Docker, error) {
	c, err := client.New(client.WithHost(host))
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", host, err)
	}
	return &docker{API: api, c: c}, nil
}

type docker struct {
	dockerguard.API
	c *client.Client

	mu   sync.Mutex
	root string // dockerd's data root, once read (it changes only with a restart)
}

// ContainerRootFS: with a graph driver (dockerd 20.10) the container's
// merged directory; with the containerd image store (Docker 29), where
// dockerd mounts the container's snapshot itself, DATA-ROOT/rootfs/
// SNAPSHOTTER/ID (moby's daemon/containerd image service).
func (d *docker) ContainerRootFS(ctx context.Context, id string) (string, error) {
	res, err := d.c.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("container %s: %w", id, dockerguard.ErrNotFound)
		}
		return "", err
	}
	var snapshotter string
	switch c := res.Container; {
	case c.GraphDriver != nil && c.GraphDriver.Data["MergedDir"] != "":
		return c.GraphDriver.Data["MergedDir"], nil
	case c.Storage != nil && c.Storage.RootFS != nil && c.Storage.RootFS.Snapshot != nil:
		snapshotter = c.Storage.RootFS.Snapshot.Name // API ≥ 1.52
	case c.GraphDriver != nil:
		snapshotter = c.GraphDriver.Name // older APIs name the snapshotter so
	}
	if snapshotter == "" {
		return "", fmt.Errorf("dockerd shows no storage for container %s", id)
	}
	root, err := d.dataRoot(ctx)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "rootfs", snapshotter, id), nil
}

// PluginRootFS: DATA-ROOT/plugins/ID/rootfs (moby's plugin manager).
func (d *docker) PluginRootFS(ctx context.Context, id string) (string, error) {
	root, err := d.dataRoot(ctx)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "plugins", id, "rootfs"), nil
}

func (d *docker) dataRoot(ctx context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.root != "" {
		return d.root, nil
	}
	res, err := d.c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", err
	}
	if res.Info.DockerRootDir == "" {
		return "", errors.New("dockerd shows no data root")
	}
	d.root = res.Info.DockerRootDir
	return d.root, nil
}
