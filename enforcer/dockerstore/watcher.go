// Package dockerstore closes a gap of Docker's containerd image store (the default of Docker
// 29 on a fresh install). There, Docker's images are image records in containerd's namespace
// moby, and a record put there without dockerd — `ctr -n moby image pull`, an import or a
// transfer through containerd's API — is one of Docker's images (`docker run` starts it) for
// which dockerd reports no event. The containerd guard leaves Docker's namespaces to the Docker
// guard, so that nothing is judged or acted on twice; this watcher makes sure nothing is missed
// either: whenever an image record in one of those namespaces is created or changed, it asks
// the Docker guard for a reconcile, which judges it by the names Docker shows.
//
// With Docker's own image store (dockerd ≤ 28 without the containerd snapshotter, Debian's
// 20.10), nothing but Docker's plugins writes image records there, and a reconcile finds
// nothing to do.
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

// New returns a watcher of namespaces (Docker's: moby and plugins.moby) that calls reconcile,
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
