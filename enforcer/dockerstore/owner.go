package dockerstore

import (
	"context"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	cdguard "github.com/pullguard/pullguard/enforcer/containerd"
	dockerguard "github.com/pullguard/pullguard/enforcer/docker"
)

// Docker is the part of Docker's API that says what dockerd accounts for.
type Docker interface {
	ListContainers(ctx context.Context) ([]dockerguard.Container, error)
	ListPlugins(ctx context.Context) ([]dockerguard.Plugin, error)
	ContainerdImageStore(ctx context.Context) (bool, error)
}

// Docker's containerd namespaces: what dockerd writes there, and nothing
// else, is the Docker guard's.
const (
	// Containers is where dockerd keeps a containerd container (ID: the
	// Docker container's) for each container it runs, and, with its
	// containerd image store (Docker 29), its images as image records.
	Containers = "moby"
	// Plugins is where dockerd runs its managed plugins: a containerd
	// container, ID the plugin's, made from a spec alone. dockerd writes
	// no image records there (a plugin's content is kept by dockerd).
	Plugins = "plugins.moby"
)

// Timings of Owner.
const (
	// startGrace is how long a running containerd task may belong to a
	// Docker container (or plugin) that dockerd does not yet say is
	// running: dockerd marks it so once the start returns.
	startGrace = 10 * time.Second
	// downGrace is how long dockerd may not answer before nothing in its
	// namespaces is taken for Docker's. A dockerd that restarts answers
	// within it; one that stays down cannot vouch for anything.
	downGrace = time.Minute
	// storeFresh is how long dockerd's answer on its image store is used
	// (it changes only with a restart of dockerd), so that a burst of
	// image events asks once.
	storeFresh = 5 * time.Second
)

// Owner tells the containerd guard which objects of Docker's namespaces
// dockerd accounts for, by asking dockerd: a containerd container is
// Docker's when dockerd lists a container (in moby) or plugin (in
// plugins.moby) of that ID, and, when its task runs, says it runs; the
// image records in moby are Docker's with its containerd image store, and
// nobody's with its own (dockerd 20.10). Labels and names in containerd
// prove nothing: any client of the socket can write them.
type Owner struct {
	docker Docker
	log    logrus.FieldLogger
	now    func() time.Time

	mu        sync.Mutex
	listed    map[string]time.Time // when each namespace's objects were listed
	states    map[string]string    // Docker's containers' states, by ID
	plugins   map[string]bool      // Docker's plugins: enabled, by ID
	store     *bool                // dockerd's containerd image store, once known
	storeAt   time.Time            // when store was last asked
	downSince time.Time            // since dockerd stopped answering; zero while it answers
	starting  map[string]time.Time // running tasks dockerd does not say run: since when
}

var _ cdguard.Owner = (*Owner)(nil)

// NewOwner returns the owner of Docker's namespaces, asking d.
func NewOwner(d Docker, log logrus.FieldLogger) *Owner {
	return &Owner{docker: d, log: log, now: time.Now, listed: map[string]time.Time{}, starting: map[string]time.Time{}}
}

// Speaks reports whether ns is one of Docker's namespaces.
func (o *Owner) Speaks(ns string) bool { return ns == Containers || ns == Plugins }

// Images: moby's records are Docker's images with its containerd image
// store; plugins.moby's are never Docker's.
func (o *Owner) Images(ctx context.Context, ns string) cdguard.Ownership {
	if ns != Containers {
		return cdguard.NotOwned
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.store != nil && o.now().Sub(o.storeAt) < storeFresh {
		return ownedIf(*o.store)
	}
	c8d, err := o.docker.ContainerdImageStore(ctx)
	if err != nil {
		if o.store != nil && !o.down(err) {
			return ownedIf(*o.store)
		}
		return o.unreachable(err)
	}
	o.downSince = time.Time{}
	o.store, o.storeAt = &c8d, o.now()
	return ownedIf(c8d)
}

// DockerImages reports, without asking dockerd, whether moby's image records
// are Docker's images as far as is known (true until known): whether a
// change to one needs a Docker reconcile.
func (o *Owner) DockerImages() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.store == nil || *o.store
}

// Container: Docker's when dockerd lists it in a listing made after since,
// and a running task is one dockerd says runs (or is starting).
func (o *Owner) Container(ctx context.Context, ns, id string, running bool, since time.Time) cdguard.Ownership {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.listed[ns].Before(since) {
		if err := o.list(ctx, ns); err != nil {
			return o.unreachable(err)
		}
	}
	o.downSince = time.Time{}
	var known, runs bool
	if ns == Plugins {
		enabled, ok := o.plugins[id]
		known, runs = ok, enabled
	} else {
		state, ok := o.states[id]
		known = ok
		switch state {
		case "running", "paused", "restarting", "removing":
			runs = true
		}
	}
	if !known {
		delete(o.starting, ns+"\x00"+id)
		return cdguard.NotOwned
	}
	if !running || runs {
		delete(o.starting, ns+"\x00"+id)
		return cdguard.Owned
	}
	// dockerd has the container (created, exited) or plugin (disabled) but
	// does not say it runs: it is starting it, or another client made a
	// container of the same ID. Only time tells them apart.
	key := ns + "\x00" + id
	first, ok := o.starting[key]
	if !ok {
		o.starting[key] = o.now()
		return cdguard.OwnerUnknown
	}
	if o.now().Sub(first) < startGrace {
		return cdguard.OwnerUnknown
	}
	o.log.WithFields(logrus.Fields{"namespace": ns, "container": id}).
		Warn("containerd: a task runs under the ID of a Docker object that dockerd does not run; judging it as another client's")
	return cdguard.NotOwned
}

// list reads dockerd's plugins (ns: plugins.moby) or containers. o.mu is
// held.
func (o *Owner) list(ctx context.Context, ns string) error {
	at := o.now()
	if ns == Plugins {
		ps, err := o.docker.ListPlugins(ctx)
		if err != nil {
			return err
		}
		o.plugins = make(map[string]bool, len(ps))
		for _, p := range ps {
			o.plugins[p.ID] = p.Enabled
		}
	} else {
		cs, err := o.docker.ListContainers(ctx)
		if err != nil {
			return err
		}
		o.states = make(map[string]string, len(cs))
		for _, c := range cs {
			o.states[c.ID] = c.State
		}
	}
	o.listed[ns] = at
	return nil
}

// down notes that dockerd did not answer and reports whether it has not
// for longer than downGrace. o.mu is held.
func (o *Owner) down(err error) bool {
	now := o.now()
	if o.downSince.IsZero() {
		o.downSince = now
		o.log.WithError(err).Warn("containerd: dockerd does not answer; what is in Docker's namespaces waits for it")
	}
	return now.Sub(o.downSince) >= downGrace
}

// unreachable is the answer while dockerd does not answer: unknown, then,
// past downGrace, nobody's. o.mu is held.
func (o *Owner) unreachable(err error) cdguard.Ownership {
	if o.down(err) {
		return cdguard.NotOwned
	}
	return cdguard.OwnerUnknown
}

func ownedIf(b bool) cdguard.Ownership {
	if b {
		return cdguard.Owned
	}
	return cdguard.NotOwned
}
