package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
	"github.com/opencontainers/go-digest"
)

var errStreamEnded = errors.New("event stream ended")

// mobyAPI is API over the moby Engine API client.
type mobyAPI struct {
	host string

	mu sync.RWMutex
	// cli is replaced by each Ping: a new connection negotiates the API
	// version afresh (dockerd may have been upgraded or downgraded while
	// away), and the moby client's own re-negotiation is not safe while
	// other requests are in flight.
	cli *client.Client
	// store is what ContainerdImageStore found, reset by Ping: 0 not
	// known yet, 1 dockerd's own image store, 2 containerd's.
	store atomic.Int32
}

var _ API = (*mobyAPI)(nil)

// NewAPI returns the API of the dockerd at host (unix:///var/run/docker.sock,
// tcp://HOST:PORT, ...); an empty host means $DOCKER_HOST or Docker's
// default socket. The API version is negotiated on Ping, down to what
// dockerd speaks (Debian 12's dockerd 20.10 speaks 1.41). It does not
// connect yet.
func NewAPI(host string) (API, error) {
	a := &mobyAPI{host: host}
	cli, err := a.newClient()
	if err != nil {
		return nil, err
	}
	a.cli = cli
	return a, nil
}

func (a *mobyAPI) newClient() (*client.Client, error) {
	opts := []client.Opt{client.WithHostFromEnv()}
	if a.host != "" {
		opts = []client.Opt{client.WithHost(a.host)}
	}
	cli, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker host %q: %w", a.host, err)
	}
	return cli, nil
}

func (a *mobyAPI) client() *client.Client {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.cli
}

func (a *mobyAPI) Ping(ctx context.Context) (string, error) {
	cli, err := a.newClient()
	if err != nil {
		return "", err
	}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		return "", fmt.Errorf("ping %s: %w", cli.DaemonHost(), err)
	}
	a.mu.Lock()
	old := a.cli
	a.cli = cli
	a.mu.Unlock()
	old.Close()
	a.store.Store(0)
	return cli.ClientVersion(), nil
}

func (a *mobyAPI) Events(ctx context.Context, since time.Time) (<-chan Event, <-chan error) {
	f := client.Filters{}
	f.Add("type", typeImage, typeContainer, typePlugin)
	f.Add("event", watchedActions...)
	opts := client.EventsListOptions{Filters: f}
	if !since.IsZero() {
		opts.Since = eventStamp(since)
	}
	res := a.client().Events(ctx, opts)
	out := make(chan Event)
	errs := make(chan error, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				errs <- ctx.Err()
				return
			case err, ok := <-res.Err:
				if !ok || err == nil {
					err = errStreamEnded
				}
				errs <- fmt.Errorf("docker events: %w", err)
				return
			case m := <-res.Messages:
				select {
				case out <- toEvent(m):
				case <-ctx.Done():
					errs <- ctx.Err()
					return
				}
			}
		}
	}()
	return out, errs
}

func toEvent(m events.Message) Event {
	t := time.Unix(m.Time, 0)
	if m.TimeNano != 0 {
		t = time.Unix(0, m.TimeNano)
	}
	return Event{Type: string(m.Type), Action: string(m.Action), ID: m.Actor.ID, Attributes: m.Actor.Attributes, Time: t}
}

func (a *mobyAPI) ListImages(ctx context.Context) ([]Image, error) {
	res, err := a.client().ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, apiError(err)
	}
	c8d := a.store.Load() == 2
	if a.store.Load() == 0 {
		// Not known yet (scan lists before anything asked): ask. A
		// dockerd that cannot say is taken for its own image store.
		c8d, _ = a.ContainerdImageStore(ctx)
	}
	out := make([]Image, 0, len(res.Items))
	for _, s := range res.Items {
		img := Image{ID: s.ID, RepoTags: s.RepoTags, RepoDigests: s.RepoDigests, InContainerd: c8d || s.Descriptor != nil}
		if img.InContainerd {
			img.RepoDigests = listedDigests(img)
		}
		out = append(out, img)
	}
	return out, nil
}

// listedDigests completes a listed image's repository digests on dockerd's
// containerd image store, where the listing gives one record's digest per
// image while inspecting it gives every name's (moby's image_list.go and
// image_inspect.go): as inspect does, each tag's repository with the image
// ID, which there is the records' target. Listing and inspecting then
// agree, and a plan made from a listing judges what the event path judges.
func listedDigests(img Image) []string {
	out := slices.Clone(img.RepoDigests)
	for _, t := range img.RepoTags {
		named, err := reference.ParseNormalizedNamed(t)
		if err != nil {
			continue
		}
		d, err := digest.Parse(img.ID)
		if err != nil {
			return img.RepoDigests
		}
		withDigest, err := reference.WithDigest(reference.TrimNamed(named), d)
		if err != nil {
			continue
		}
		if s := reference.FamiliarString(withDigest); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (a *mobyAPI) InspectImage(ctx context.Context, refOrID string) (Image, error) {
	res, err := a.client().ImageInspect(ctx, refOrID)
	if err != nil {
		return Image{}, apiError(err)
	}
	// Only the containerd image store describes the image's target.
	c8d := res.Descriptor != nil || a.store.Load() == 2
	return Image{ID: res.ID, RepoTags: res.RepoTags, RepoDigests: res.RepoDigests, InContainerd: c8d}, nil
}

func (a *mobyAPI) ImageIDOf(ctx context.Context, name string) (string, error) {
	// The history's first entry is the image itself, newest first.
	res, err := a.client().ImageHistory(ctx, name)
	if err != nil {
		return "", apiError(err)
	}
	if len(res.Items) > 0 && strings.HasPrefix(res.Items[0].ID, "sha256:") {
		return res.Items[0].ID, nil
	}
	img, err := a.InspectImage(ctx, name)
	return img.ID, err
}

func (a *mobyAPI) RemoveImageName(ctx context.Context, name string) (bool, error) {
	id, err := a.removeImageName(ctx, name)
	return id != "", err
}

// removeImageName removes name and returns the ID of the image deleted
// with it, "" when the image kept other names.
func (a *mobyAPI) removeImageName(ctx context.Context, name string) (string, error) {
	// No force, so Docker only untags an image that keeps other names; no
	// pruning, so untagged parent images stay (they are not ours to judge).
	res, err := a.client().ImageRemove(ctx, name, client.ImageRemoveOptions{})
	if err != nil && strings.Contains(err.Error(), "unrecognized image ID") {
		// dockerd 20.10, asked to remove an image's last two names side
		// by side, has both requests untag and then both delete the
		// image, and the second fails so: its name is gone all the same,
		// and the image with it, deleted by the other request.
		return "", nil
	}
	if err != nil {
		return "", apiError(err)
	}
	for _, it := range res.Items {
		if it.Deleted != "" {
			return it.Deleted, nil // the image first, then its layers (20.10)
		}
	}
	return "", nil
}

// RemoveImageNameOf sends the lookup of the name's image first, on a
// connection of its own, and the removal as soon as the lookup is written:
// dockerd reads the name before it removes it, and the removal does not
// wait a round trip for the answer. Should the removal still win (dockerd
// serves the two side by side, and a loaded host may run the removal
// first), a deleted image's ID comes from the removal's answer, and that
// of an image that kept other names from dockerd's untag event, which it
// logs while it serves the removal.
func (a *mobyAPI) RemoveImageNameOf(ctx context.Context, name string) (string, bool, error) {
	written := make(chan struct{})
	var once sync.Once
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { close(written) }) }}
	lookup, stop := context.WithCancel(httptrace.WithClientTrace(ctx, trace))
	defer stop()
	type answer struct {
		id  string
		err error
	}
	looked := make(chan answer, 1)
	go func() {
		id, err := a.ImageIDOf(lookup, name)
		looked <- answer{id, err}
	}()
	var ans *answer
	select {
	case <-written:
	case an := <-looked: // failed before it was sent, or answered already
		ans = &an
	}
	sent := time.Now()
	deletedID, err := a.removeImageName(ctx, name)
	answered := time.Now()
	if deletedID != "" {
		return deletedID, true, nil // what was deleted, whatever the lookup says
	}
	if ans == nil {
		an := <-looked
		ans = &an
	}
	if ans.id == "" && err == nil {
		// dockerd's own image store names the image, not the name, in
		// the event: any untag counts.
		return a.UntaggedBetween(ctx, "", sent, answered), false, nil
	}
	return ans.id, false, err
}

// UntaggedBetween implements API.
func (a *mobyAPI) UntaggedBetween(ctx context.Context, name string, from, to time.Time) string {
	f := client.Filters{}
	f.Add("type", typeImage)
	f.Add("event", actionUntag)
	ctx, cancel := context.WithTimeout(ctx, untagWait)
	defer cancel()
	// An until in the past: dockerd sends what it kept and ends the stream.
	res := a.client().Events(ctx, client.EventsListOptions{Since: eventStamp(from), Until: eventStamp(to), Filters: f})
	var id string
	for {
		select {
		case m := <-res.Messages:
			if name != "" && normalize(m.Actor.Attributes["name"]) != normalize(name) {
				continue
			}
			if id != "" && m.Actor.ID != id {
				return ""
			}
			id = m.Actor.ID
		case err := <-res.Err:
			if !errors.Is(err, io.EOF) {
				return ""
			}
			return id
		}
	}
}

// eventStamp is t as the events API's since and until take it.
func eventStamp(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

func (a *mobyAPI) ListContainers(ctx context.Context) ([]Container, error) {
	res, err := a.client().ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, apiError(err)
	}
	out := make([]Container, 0, len(res.Items))
	for _, s := range res.Items {
		c := Container{ID: s.ID, Image: s.Image, ImageID: s.ImageID, State: string(s.State), ImageMounts: imageMountsOf(s.Mounts, nil)}
		if len(s.Names) > 0 {
			c.Name = strings.TrimPrefix(s.Names[0], "/")
		}
		out = append(out, c)
	}
	return out, nil
}

func (a *mobyAPI) InspectContainer(ctx context.Context, id string) (Container, error) {
	res, err := a.client().ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return Container{}, apiError(err)
	}
	r := res.Container
	c := Container{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/"), ImageID: r.Image, ImageMounts: imageMountsOf(r.Mounts, r.HostConfig)}
	if r.Config != nil {
		c.Image = r.Config.Image
	}
	if r.State != nil {
		c.State = string(r.State.Status)
	}
	return c, nil
}

func (a *mobyAPI) StopContainer(ctx context.Context, id string) error {
	_, err := a.client().ContainerStop(ctx, id, client.ContainerStopOptions{})
	return apiError(err)
}

func (a *mobyAPI) RemoveContainer(ctx context.Context, id string) error {
	_, err := a.client().ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
	return apiError(err)
}

func (a *mobyAPI) ContainerdImageStore(ctx context.Context) (bool, error) {
	res, err := a.client().Info(ctx, client.InfoOptions{})
	if err != nil {
		return false, apiError(err)
	}
	for _, kv := range res.Info.DriverStatus {
		// dockerd 29 (daemon/containerd/service.go) reports its snapshotter so.
		if kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1" {
			a.store.Store(2)
			return true, nil
		}
	}
	a.store.Store(1)
	return false, nil
}

func (a *mobyAPI) ListPlugins(ctx context.Context) ([]Plugin, error) {
	res, err := a.client().PluginList(ctx, client.PluginListOptions{})
	if err != nil {
		return nil, apiError(err)
	}
	out := make([]Plugin, 0, len(res.Items))
	for _, p := range res.Items {
		out = append(out, Plugin{ID: p.ID, Name: p.Name, Reference: p.PluginReference, Enabled: p.Enabled})
	}
	return out, nil
}

func (a *mobyAPI) DisablePlugin(ctx context.Context, id string) error {
	_, err := a.client().PluginDisable(ctx, id, client.PluginDisableOptions{Force: true})
	return apiError(err)
}

func (a *mobyAPI) RemovePlugin(ctx context.Context, id string) error {
	_, err := a.client().PluginRemove(ctx, id, client.PluginRemoveOptions{Force: true})
	return apiError(err)
}

// apiError marks the errors the guard tells apart.
func apiError(err error) error {
	switch {
	case err == nil:
		return nil
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case cerrdefs.IsConflict(err):
		return fmt.Errorf("%w: %w", ErrInUse, err)
	}
	return err
}
