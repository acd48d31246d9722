package containerd

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"syscall"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// connectTimeout bounds gRPC's reconnect backoff and each connection
// attempt. The client's default (10 s) would let a restarted containerd go
// unnoticed for up to 10 s; a local socket connects in milliseconds.
const connectTimeout = 2 * time.Second

// killTimeout bounds the wait for a SIGKILLed task to exit.
const killTimeout = 30 * time.Second

// remote is the API over containerd's Go client.
type remote struct {
	c *client.Client
}

var _ API = (*remote)(nil)

// NewAPI connects to the containerd socket at address. It does not wait for
// containerd: calls fail until it is reachable, and the connection comes
// back by itself after a containerd restart.
func NewAPI(address string) (API, error) {
	c, err := client.New(address, client.WithTimeout(connectTimeout))
	if err != nil {
		return nil, fmt.Errorf("containerd client for %s: %w", address, err)
	}
	return &remote{c: c}, nil
}

func (r *remote) Close() error { return r.c.Close() }

func (r *remote) Namespaces(ctx context.Context) ([]string, error) {
	return r.c.NamespaceService().List(ctx)
}

func (r *remote) Images(ctx context.Context, ns string) ([]Image, error) {
	return r.listImages(namespaces.WithNamespace(ctx, ns))
}

func (r *remote) ImagesByTarget(ctx context.Context, ns, digest string) ([]Image, error) {
	return r.listImages(namespaces.WithNamespace(ctx, ns), "target.digest=="+strconv.Quote(digest))
}

func (r *remote) listImages(ctx context.Context, filters ...string) ([]Image, error) {
	list, err := r.c.ImageService().List(ctx, filters...)
	if err != nil {
		return nil, err
	}
	out := make([]Image, len(list))
	for i, img := range list {
		out[i] = Image{Name: img.Name, Target: img.Target.Digest.String()}
	}
	return out, nil
}

func (r *remote) Image(ctx context.Context, ns, name string) (Image, error) {
	img, err := r.c.ImageService().Get(namespaces.WithNamespace(ctx, ns), name)
	if err != nil {
		return Image{}, err
	}
	return Image{Name: img.Name, Target: img.Target.Digest.String()}, nil
}

func (r *remote) DeleteImage(ctx context.Context, ns, name string) error {
	return r.c.ImageService().Delete(namespaces.WithNamespace(ctx, ns), name, images.SynchronousDelete())
}

func (r *remote) Containers(ctx context.Context, ns string) ([]Container, error) {
	list, err := r.c.ContainerService().List(namespaces.WithNamespace(ctx, ns))
	if err != nil {
		return nil, err
	}
	out := make([]Container, len(list))
	for i, c := range list {
		out[i] = containerOf(c)
	}
	return out, nil
}

func (r *remote) Container(ctx context.Context, ns, id string) (Container, error) {
	c, err := r.c.ContainerService().Get(namespaces.WithNamespace(ctx, ns), id)
	if err != nil {
		return Container{}, err
	}
	return containerOf(c), nil
}

func containerOf(c containers.Container) Container {
	out := Container{ID: c.ID, Image: c.Image, Labels: c.Labels,
		Snapshotter: c.Snapshotter, SnapshotKey: c.SnapshotKey, Created: c.CreatedAt}
	if c.Spec != nil {
		// Only the annotations are needed; the spec is JSON (containerd's
		// client marshals oci.Spec with typeurl's JSON fallback).
		var spec struct {
			Annotations map[string]string `json:"annotations"`
		}
		if err := json.Unmarshal(c.Spec.GetValue(), &spec); err == nil {
			out.Annotations = spec.Annotations
		}
	}
	return out
}

func (r *remote) TaskStatus(ctx context.Context, ns, id string) (TaskStatus, error) {
	resp, err := r.c.TaskService().Get(namespaces.WithNamespace(ctx, ns), &tasksapi.GetRequest{ContainerID: id})
	if err != nil {
		return "", errgrpc.ToNative(err)
	}
	switch resp.GetProcess().GetStatus() {
	case tasktypes.Status_CREATED:
		return TaskCreated, nil
	case tasktypes.Status_RUNNING:
		return TaskRunning, nil
	case tasktypes.Status_STOPPED:
		return TaskStopped, nil
	case tasktypes.Status_PAUSED:
		return TaskPaused, nil
	case tasktypes.Status_PAUSING:
		return TaskPausing, nil
	}
	return TaskUnknown, nil
}

func (r *remote) KillTask(ctx context.Context, ns, id string) error {
	ctx = namespaces.WithNamespace(ctx, ns)
	tasks := r.c.TaskService()
	if _, err := tasks.Kill(ctx, &tasksapi.KillRequest{ContainerID: id, Signal: uint32(syscall.SIGKILL), All: true}); err != nil {
		return errgrpc.ToNative(err)
	}
	// Wait returns at once for a task that already exited.
	ctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	if _, err := tasks.Wait(ctx, &tasksapi.WaitRequest{ContainerID: id}); err != nil {
		return fmt.Errorf("waiting for the task to exit: %w", errgrpc.ToNative(err))
	}
	return nil
}

func (r *remote) DeleteTask(ctx context.Context, ns, id string) error {
	_, err := r.c.TaskService().Delete(namespaces.WithNamespace(ctx, ns), &tasksapi.DeleteTaskRequest{ContainerID: id})
	return errgrpc.ToNative(err)
}

func (r *remote) DeleteContainer(ctx context.Context, ns, id string) error {
	ctx = namespaces.WithNamespace(ctx, ns)
	c, err := r.c.LoadContainer(ctx, id)
	if err != nil {
		return err
	}
	return c.Delete(ctx, client.WithSnapshotCleanup)
}

func (r *remote) Tasks(ctx context.Context, ns string) ([]string, error) {
	resp, err := r.c.TaskService().List(namespaces.WithNamespace(ctx, ns), &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	ids := make([]string, 0, len(resp.GetTasks()))
	for _, t := range resp.GetTasks() {
		ids = append(ids, t.GetID())
	}
	return ids, nil
}

// reaperLabel marks the stand-in container ReapTask makes.
const reaperLabel = "io.pullguard.reaping"

func (r *remote) ReapTask(ctx context.Context, ns, id string) error {
	ctx = namespaces.WithNamespace(ctx, ns)
	spec, err := typeurl.MarshalAny(&oci.Spec{Version: specs.Version})
	if err != nil {
		return err
	}
	stand := containers.Container{ID: id, Labels: map[string]string{reaperLabel: "a task whose container was deleted"},
		Runtime: containers.RuntimeInfo{Name: plugins.RuntimeRuncV2}, Spec: spec}
	if _, err := r.c.ContainerService().Create(ctx, stand); err != nil {
		return err
	}
	defer func() {
		// Deleted whatever happens to the task: a stand-in must not stay.
		_ = r.c.ContainerService().Delete(context.WithoutCancel(ctx), id)
	}()
	if err := r.KillTask(ctx, ns, id); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if err := r.DeleteTask(ctx, ns, id); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

func (r *remote) ChainIDs(ctx context.Context, ns, target string) ([]string, bool, error) {
	dg, err := digest.Parse(target)
	if err != nil {
		return nil, false, fmt.Errorf("image target %q: %w", target, err)
	}
	return chainIDs(namespaces.WithNamespace(ctx, ns), r.c.ContentStore(), dg)
}

func (r *remote) Snapshot(ctx context.Context, ns, snapshotter, key string) (Snapshot, error) {
	info, err := r.c.SnapshotService(snapshotter).Stat(namespaces.WithNamespace(ctx, ns), key)
	if err != nil {
		return Snapshot{}, err
	}
	return snapshotOf(info), nil
}

func (r *remote) Snapshots(ctx context.Context, ns, snapshotter string) ([]Snapshot, error) {
	var out []Snapshot
	err := r.c.SnapshotService(snapshotter).Walk(namespaces.WithNamespace(ctx, ns), func(_ context.Context, info snapshots.Info) error {
		out = append(out, snapshotOf(info))
		return nil
	})
	return out, err
}

func snapshotOf(info snapshots.Info) Snapshot {
	return Snapshot{Name: info.Name, Parent: info.Parent, Committed: info.Kind == snapshots.KindCommitted}
}

func (r *remote) Subscribe(ctx context.Context, topics ...string) (<-chan Event, <-chan error) {
	filters := make([]string, len(topics))
	for i, t := range topics {
		filters[i] = "topic==" + strconv.Quote(t)
	}
	in, inErrs := r.c.EventService().Subscribe(ctx, filters...)
	out := make(chan Event)
	errs := make(chan error, 1)
	go func() {
		for {
			select {
			case env := <-in:
				ev := Event{Namespace: env.Namespace, Topic: env.Topic, Time: env.Timestamp}
				if env.Event != nil {
					if v, err := typeurl.UnmarshalAny(env.Event); err == nil {
						ev.Image, ev.ContainerID = eventSubject(v)
					}
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					errs <- ctx.Err()
					return
				}
			case <-ctx.Done():
				errs <- ctx.Err()
				return
			case err := <-inErrs:
				if err == nil {
					err = fmt.Errorf("event stream closed")
				}
				errs <- errgrpc.ToNative(err)
				return
			}
		}
	}()
	return out, errs
}

// eventSubject picks the image name or container ID out of an event.
func eventSubject(v any) (image, containerID string) {
	switch e := v.(type) {
	case *eventtypes.ImageCreate:
		return e.Name, ""
	case *eventtypes.ImageUpdate:
		return e.Name, ""
	case *eventtypes.ContainerCreate:
		return "", e.ID
	case *eventtypes.TaskCreate:
		return "", e.ContainerID
	case *eventtypes.TaskStart:
		return "", e.ContainerID
	}
	return "", ""
}
