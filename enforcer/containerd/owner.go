package containerd

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"
)

// Ownership says whether an object of a namespace another guard speaks for
// (Docker's moby and plugins.moby) is that guard's to judge.
type Ownership int

const (
	// NotOwned: the other guard does not account for it (another client of
	// containerd wrote it); this guard judges it like any other object.
	NotOwned Ownership = iota
	// Owned: the other guard judges it through its own runtime's API; this
	// guard leaves it alone, so that nothing is judged twice.
	Owned
	// OwnerUnknown: it cannot be told now (dockerd does not answer); the
	// object is looked at again shortly.
	OwnerUnknown
)

func (o Ownership) String() string {
	switch o {
	case Owned:
		return "owned"
	case OwnerUnknown:
		return "unknown"
	}
	return "not owned"
}

// Owner tells which objects of its namespaces another guard accounts for.
// Nothing a containerd client can write (a label, an Image field, the
// namespace itself) is taken as proof: only what the other runtime's own
// API lists.
type Owner interface {
	// Speaks reports whether ns is one of the owner's namespaces; the
	// others are never asked about.
	Speaks(ns string) bool
	// Images is whether the image records of ns are the owner's.
	Images(ctx context.Context, ns string) Ownership
	// Container is whether container id of ns is the owner's. rootPath is
	// the root path of its runtime spec, the file system it runs on; since
	// is a time at which the container already existed in containerd, so
	// that an answer from a listing made after it is final.
	Container(ctx context.Context, ns, id, rootPath string, since time.Time) Ownership
}

// ownerRetry is how soon an object whose owner could not be told is looked
// at again.
const ownerRetry = time.Second

// WithOwner has the guard leave to o what o's runtime accounts for in o's
// namespaces, and judge everything else there like any other object. The
// daemon passes Docker's (enforcer/dockerstore) when it guards Docker too.
func WithOwner(o Owner) Option { return func(g *Guard) { g.owner = o } }

// ownership is whose the object k names is: NotOwned where no owner
// speaks for its namespace.
func (g *Guard) ownership(ctx context.Context, k workKey, since time.Time) Ownership {
	if g.owner == nil || !g.owner.Speaks(k.ns) {
		return NotOwned
	}
	if k.containerID == "" {
		return g.owner.Images(ctx, k.ns)
	}
	var rootPath string
	if rp, ok := g.api.(rootPather); ok {
		p, err := rp.RootPath(ctx, k.ns, k.containerID)
		switch {
		case isNotFound(err):
			return NotOwned // gone: the guard finds that out itself
		case err != nil:
			return OwnerUnknown
		}
		rootPath = p
	}
	return g.owner.Container(ctx, k.ns, k.containerID, rootPath, since)
}

// leftToOwner reports whether the object an event named is to be left
// alone now: another guard judges it, or whose it is cannot be told yet,
// and then it is queued again shortly.
func (g *Guard) leftToOwner(ctx context.Context, k workKey, topic string) bool {
	switch g.ownership(ctx, k, time.Now()) {
	case Owned:
		return true
	case OwnerUnknown:
		g.log.WithFields(logrus.Fields{"namespace": k.ns, "image": k.image, "container": k.containerID, "event": topic}).
			Debug("containerd: cannot tell yet whether Docker accounts for it; looking again shortly")
		time.AfterFunc(ownerRetry, func() {
			if ctx.Err() == nil {
				g.loop.Add(k, topic)
			}
		})
		return true
	}
	return false
}

// reconcileLater asks for a reconcile shortly, once however often it is
// called before that: a reconcile could not tell whose some objects were.
func (g *Guard) reconcileLater() {
	if g.retrying.CompareAndSwap(false, true) {
		time.AfterFunc(ownerRetry, func() {
			g.retrying.Store(false)
			g.loop.RequestReconcile()
		})
	}
}
