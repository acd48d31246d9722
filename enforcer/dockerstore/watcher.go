// Package dockerstore speaks for Docker in Docker's containerd namespaces, moby and
// plugins.moby, where other clients of containerd's socket can write too.
//
// Owner tells the containerd guard what dockerd accounts for there, by asking dockerd: the
// Docker guard judges that through Docker's API, and the containerd guard judges everything
// else (a `ctr -n moby run`, an import into plugins.moby) like any other containerd object, so
// that nothing is judged twice and nothing is missed.
//
// With Docker's containerd image store (the default of Docker 29 on a fresh install), the
// image records in moby are Docker's images, and one put there without dockerd — `ctr -n moby
// image pull`, an import or a transfer through containerd's API — is one of Docker's images
// (`docker run` starts it) for which dockerd reports no event. Watcher closes that gap:
// whenever an image record in moby is created or changed, it asks the Docker guard for a
// reconcile, which judges it by the names Docker shows. With Docker's own image store
// (dockerd 20.10), moby's records are nobody's to Docker, and the containerd guard judges them.
package dockerstore

import (
	"context"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	cdguard "github.com/pullguard/pullguard/enforcer/containerd"
)

// Subscriber is the part of containerd's API the watcher uses.
type Subscriber interface {
	Subscribe(ctx context.Context, topics ...string) (<-chan cdguard.Event, <-chan error)
}

// maxBackoff caps the wait before subscribing again after containerd went away.
const maxBackoff = 5 * time.Second

// Watcher asks for a Docker reconcile when an image record in Docker's namespaces changes.
type Watcher struct {
	api        Subscriber
	namespaces []string
	reconcile  func()
	log        *logrus.Logger
	ready      chan struct{}
}

// New returns a watcher of namespaces (Docker's image namespace, moby) that calls reconcile,
// which must not block (the Docker guard's RequestReconcile).
func New(api Subscriber, namespaces []string, reconcile func(), log *logrus.Logger) *Watcher {
	ready := make(chan struct{})
	close(ready) // nothing to do before the daemon reports ready
	return &Watcher{api: api, namespaces: namespaces, reconcile: reconcile, log: log, ready: ready}
}

// Run follows containerd's image events until ctx is done. When the stream breaks
// (containerd restarted), it subscribes again and asks for a reconcile: events are not
// replayed, so one may have been missed.
func (w *Watcher) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for first := true; ; first = false {
		sctx, cancel := context.WithCancel(ctx)
		events, errs := w.api.Subscribe(sctx, "/images/create", "/images/update")
		if !first {
			w.reconcile()
		}
		err := w.follow(ctx, events, errs)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		w.log.WithError(err).Debug("containerd events of Docker's namespaces: subscribing again")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (w *Watcher) follow(ctx context.Context, events <-chan cdguard.Event, errs <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return err
		case ev := <-events:
			if slices.Contains(w.namespaces, ev.Namespace) {
				w.log.WithFields(logrus.Fields{"namespace": ev.Namespace, "image": ev.Image, "topic": ev.Topic}).
					Debug("image record in Docker's namespace changed: Docker reconcile")
				w.reconcile()
			}
		}
	}
}

// RequestReconcile does nothing: the watcher holds no state to mend.
func (w *Watcher) RequestReconcile() {}

// FirstPass is closed: the watcher needs no first pass (the Docker guard makes its own).
func (w *Watcher) FirstPass() <-chan struct{} { return w.ready }
