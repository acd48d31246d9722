package docker

import (
	"context"
	"errors"
	"time"
)

// API is the part of the Docker Engine API the guard uses. It is declared
// here, by its consumer, so that tests can drive the guard with a fake; the
// adapter returned by NewAPI satisfies it with the moby client.
//
// Errors that mean "that object does not exist (any more)" wrap ErrNotFound;
// a removal Docker refuses because a container uses the image wraps ErrInUse.
type API interface {
	// Ping checks that dockerd answers and negotiates the API version,
	// which it returns.
	Ping(ctx context.Context) (apiVersion string, err error)
	// Events streams the image and container events the guard handles,
	// from since (zero: from now) until ctx is done or the stream fails.
	// The error channel receives one error when the stream ends.
	Events(ctx context.Context, since time.Time) (<-chan Event, <-chan error)
	// ListImages lists the top-level images with their names.
	ListImages(ctx context.Context) ([]Image, error)
	// InspectImage looks an image up by name, full ID or short ID.
	InspectImage(ctx context.Context, refOrID string) (Image, error)
	// ImageIDOf resolves a name to the ID of the image it points at, by
	// the cheapest call that says: on Docker 29's containerd image store
	// an inspection costs about three times as much (19 against 7 ms).
	ImageIDOf(ctx context.Context, name string) (string, error)
	// RemoveImageName removes one name (a tag or a repo@digest reference)
	// without force, the way `docker rmi NAME` does: Docker only untags an
	// image that keeps other names, and deletes it with its last name.
	// deleted reports the latter.
	RemoveImageName(ctx context.Context, name string) (deleted bool, err error)
	// RemoveImageNameOf removes one name as RemoveImageName does and says
	// which image it named (ImageIDOf), without making the removal wait
	// for that answer; id is "" when that cannot be known any more.
	RemoveImageNameOf(ctx context.Context, name string) (id string, deleted bool, err error)
	// UntaggedBetween is the image whose untag event for name dockerd
	// logged between from and to, read back from the events dockerd keeps;
	// name "" takes an untag of any name. It is "" when there was none, or
	// untags of more than one image.
	UntaggedBetween(ctx context.Context, name string, from, to time.Time) string
	// ListContainers lists all containers, running or not.
	ListContainers(ctx context.Context) ([]Container, error)
	// InspectContainer looks a container up by ID or name.
	InspectContainer(ctx context.Context, id string) (Container, error)
	// StopContainer stops a container within its own stop timeout.
	StopContainer(ctx context.Context, id string) error
	// RemoveContainer removes a container with force: a running one is killed.
	RemoveContainer(ctx context.Context, id string) error
	// ContainerdImageStore reports whether dockerd keeps its images in
	// containerd (Docker 29's default), where repository digests are made
	// from image names rather than recorded by pulls (load.go).
	ContainerdImageStore(ctx context.Context) (bool, error)
	// ListPlugins lists the installed plugins (plugins.go).
	ListPlugins(ctx context.Context) ([]Plugin, error)
	// DisablePlugin stops a plugin with force, even while it is in use.
	DisablePlugin(ctx context.Context, id string) error
	// RemovePlugin removes a plugin with force (an enabled one is disabled).
	RemovePlugin(ctx context.Context, id string) error
}

var (
	// ErrNotFound: the image, name or container does not exist (any more).
	ErrNotFound = errors.New("not found")
	// ErrInUse: Docker refused to remove an image's last name because a
	// container uses the image.
	ErrInUse = errors.New("in use by a container")
	// ErrWouldRemoveAllowed: removing a disallowed tag would make Docker also
	// remove an allowed repo@digest reference of the same repository (Docker
	// drops a repository's digest references with its last tag), so the tag
	// is left in place.
	ErrWouldRemoveAllowed = errors.New("removing it would also remove an allowed digest reference")
)

// Event is one Docker event, reduced to what the guard reads.
type Event struct {
	// Type is "image" or "container".
	Type string
	// Action is the event's action: pull, tag, load, create, start, ...
	Action string
	// ID is the actor: an image reference (pull), an image ID (tag, load,
	// import) or a container ID.
	ID         string
	Attributes map[string]string
	// Time is when dockerd emitted the event.
	Time time.Time
}

// Event types and the actions the guard acts on.
const (
	typeImage     = "image"
	typeContainer = "container"

	actionPull    = "pull"
	actionTag     = "tag"
	actionLoad    = "load"
	actionImport  = "import"
	actionCommit  = "commit"
	actionCreate  = "create"
	actionStart   = "start"
	actionDestroy = "destroy"
	actionUntag   = "untag"
	actionDelete  = "delete"
)

// watchedActions are the event actions the guard subscribes to, for either
// type (the Engine API filters type and event independently).
var watchedActions = []string{
	actionPull, actionTag, actionLoad, actionImport, actionCommit,
	actionCreate, actionStart, actionDestroy, actionEnable,
	// Not acted on, but they change which names images have, which the
	// authorization plugin's image index must hear of.
	actionUntag, actionDelete,
}

// Image is an image and its names as Docker lists them.
type Image struct {
	// ID is the full image ID, sha256:<hex>.
	ID string
	// RepoTags are name:tag references, in Docker's familiar form.
	RepoTags []string
	// RepoDigests are name@sha256:<hex> references.
	RepoDigests []string
	// InContainerd: dockerd keeps the image in containerd (Docker 29's
	// containerd image store), where RepoDigests are made from the names
	// and prove nothing about where the content came from (provenance.go).
	InContainerd bool
}

// Container is a container as the guard judges it.
type Container struct {
	ID   string
	Name string
	// Image is the image as the user gave it: a name, a digest reference,
	// a short or a full ID. Listings show the image ID instead when the
	// name no longer points at the container's image.
	Image string
	// ImageID is the full ID of the container's image.
	ImageID string
	// State is Docker's state: created, running, paused, restarting,
	// removing, exited or dead.
	State string
	// ImageMounts are the images it mounts (mounts.go).
	ImageMounts []ImageMount
}
