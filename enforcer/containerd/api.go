// Package containerd guards a containerd host (a Kubernetes node, or a
// plain containerd) with pullguard's policy: it watches image and container
// events in every namespace, deletes image records the policy does not
// allow, and removes containers that run disallowed images.
//
// containerd never replays events, so what happened while pullguard was not
// listening is found by reconciling: at start, on every reconnect and after
// each policy reload.
package containerd

import (
	"context"
	"io"
	"time"
)

// API is the part of containerd the guard uses. Every call takes the
// namespace it applies to; errors are containerd's (errdefs), so that
// errdefs.IsNotFound works on them.
type API interface {
	Namespaces(ctx context.Context) ([]string, error)

	// Images lists every image record of a namespace.
	Images(ctx context.Context, ns string) ([]Image, error)
	// ImagesByTarget lists the records whose target has the given digest:
	// every name of one content.
	ImagesByTarget(ctx context.Context, ns, digest string) ([]Image, error)
	Image(ctx context.Context, ns, name string) (Image, error)
	// DeleteImage deletes one record and waits for the garbage collection
	// it causes, so that content no name holds is gone when it returns.
	DeleteImage(ctx context.Context, ns, name string) error

	Containers(ctx context.Context, ns string) ([]Container, error)
	Container(ctx context.Context, ns, id string) (Container, error)
	// TaskStatus is the state of the container's task; NotFound when the
	// container has none.
	TaskStatus(ctx context.Context, ns, id string) (TaskStatus, error)
	// KillTask sends SIGKILL to every process of the task and waits for it
	// to exit.
	KillTask(ctx context.Context, ns, id string) error
	DeleteTask(ctx context.Context, ns, id string) error
	// DeleteContainer deletes the container and its root file system
	// snapshot. It fails (FailedPrecondition) while the container has a
	// task.
	DeleteContainer(ctx context.Context, ns, id string) error
	// Tasks lists the container IDs of the namespace's tasks, those whose
	// container is gone included.
	Tasks(ctx context.Context, ns string) ([]string, error)
	// ReapTask kills and deletes the task of a container that no longer
	// exists. containerd reaches a task only through its container
	// (TaskStatus, KillTask and DeleteTask answer NotFound), so it
	// recreates a stand-in container of that ID for as long as that
	// takes. AlreadyExists: the container exists again.
	ReapTask(ctx context.Context, ns, id string) error

	// ChainIDs are the chain IDs (identity.ChainID of the rootfs diff
	// IDs) of every image the content store holds under the manifest or
	// index target: what unpacking it names its top snapshot, in any
	// snapshotter. Complete is false when a manifest or config the index
	// names is not in the content store (a platform not pulled, a pull
	// still running).
	ChainIDs(ctx context.Context, ns, target string) (chains []string, complete bool, err error)
	// Snapshot is one snapshot of a snapshotter.
	Snapshot(ctx context.Context, ns, snapshotter, key string) (Snapshot, error)
	// Snapshots lists every snapshot of a snapshotter.
	Snapshots(ctx context.Context, ns, snapshotter string) ([]Snapshot, error)

	// Subscribe streams the events of the given topics in every namespace.
	// The error channel yields one error when the stream ends; the event
	// channel is never closed.
	Subscribe(ctx context.Context, topics ...string) (<-chan Event, <-chan error)

	io.Closer
}

// Image is an image record: a name and the content it points at.
type Image struct {
	Name string
	// Target is the digest of the image's manifest or index.
	Target string
}

// Container is what the guard reads of a container.
type Container struct {
	ID string
	// Image is the container's image field. CRI leaves it empty; its
	// containers name the image in Labels or Annotations instead.
	Image  string
	Labels map[string]string
	// Annotations are the OCI runtime spec's annotations.
	Annotations map[string]string
	// Snapshotter and SnapshotKey name the container's root file system
	// snapshot; both empty for a container on a directory of the host
	// (ctr run --rootfs).
	Snapshotter string
	SnapshotKey string
	// Created is when containerd created the container.
	Created time.Time
}

// Snapshot is what the guard reads of a snapshot.
type Snapshot struct {
	Name string
	// Parent is the committed snapshot it was prepared from; empty for a
	// base layer.
	Parent string
	// Committed is set for a committed (read-only) snapshot; an active
	// snapshot or a view is what a container mounts.
	Committed bool
}

// TaskStatus is a task's state, as containerd names it.
type TaskStatus string

const (
	TaskCreated TaskStatus = "created"
	TaskRunning TaskStatus = "running"
	TaskStopped TaskStatus = "stopped"
	TaskPaused  TaskStatus = "paused"
	TaskPausing TaskStatus = "pausing"
	TaskUnknown TaskStatus = "unknown"
)

// Event is one containerd event, reduced to what the guard acts on.
type Event struct {
	Namespace string
	Topic     string
	// Image is the image record's name, for image events.
	Image string
	// ContainerID is set for container and task events.
	ContainerID string
	// Time is when containerd published the event (zero when unknown).
	Time time.Time
}

// Topics the guard subscribes to. Image events name a record but carry no
// digest; container and task events carry the container's ID.
const (
	TopicImageCreate     = "/images/create"
	TopicImageUpdate     = "/images/update"
	TopicContainerCreate = "/containers/create"
	TopicTaskCreate      = "/tasks/create"
	TopicTaskStart       = "/tasks/start"
)

var topics = []string{TopicImageCreate, TopicImageUpdate, TopicContainerCreate, TopicTaskCreate, TopicTaskStart}

// Annotations and labels that name a CRI container's image. CRI (containerd
// 1.6 and 2.x) leaves the container's Image field empty and puts the image
// into the runtime spec's annotations; the user's reference when kubelet
// passes it, the image's first name or its ID otherwise.
const (
	criImageName        = "io.kubernetes.cri.image-name"
	criSandboxImageName = "io.kubernetes.cri.podsandbox.image-name"
)
