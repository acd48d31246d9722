package dockerstore

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	cdguard "github.com/pullguard/pullguard/enforcer/containerd"
)

// fakeEvents hands out one event stream per Subscribe call.
type fakeEvents struct {
	streams chan stream
	topics  [][]string
}

type stream struct {
	events chan cdguard.Event
	errs   chan error
}

func (f *fakeEvents) Subscribe(_ context.Context, topics ...string) (<-chan cdguard.Event, <-chan error) {
	f.topics = append(f.topics, topics)
	s := stream{events: make(chan cdguard.Event), errs: make(chan error, 1)}
	f.streams <- s
	return s.events, s.errs
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func TestWatcher(t *testing.T) {
	fake := &fakeEvents{streams: make(chan stream, 2)}
	var reconciles atomic.Int32
	w := New(fake, []string{"moby", "plugins.moby"}, func() { reconciles.Add(1) }, quietLog())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()

	s := <-fake.streams
	s.events <- cdguard.Event{Namespace: "k8s.io", Topic: "/images/create", Image: "x"}
	s.events <- cdguard.Event{Namespace: "default", Topic: "/images/update", Image: "x"}
	if n := reconciles.Load(); n != 0 {
		t.Errorf("%d reconciles for events outside Docker's namespaces", n)
	}
	s.events <- cdguard.Event{Namespace: "moby", Topic: "/images/create", Image: "evil"}
	s.events <- cdguard.Event{Namespace: "plugins.moby", Topic: "/images/update", Image: "evil"}
	// The fake's channels are unbuffered: once the next send is taken, the one before is done.
	s.events <- cdguard.Event{Namespace: "default"}
	if n := reconciles.Load(); n != 2 {
		t.Errorf("%d reconciles after two events in Docker's namespaces, want 2", n)
	}

	// containerd goes away: the watcher subscribes again and reconciles, since events are
	// not replayed.
	s.errs <- errors.New("connection reset")
	select {
	case s = <-fake.streams:
	case <-time.After(5 * time.Second):
		t.Fatal("no new subscription after the stream broke")
	}
	s.events <- cdguard.Event{Namespace: "default"}
	if n := reconciles.Load(); n != 3 {
		t.Errorf("%d reconciles after a reconnect, want 3", n)
	}
	for _, topics := range fake.topics {
		if len(topics) != 2 || topics[0] != "/images/create" || topics[1] != "/images/update" {
			t.Errorf("subscribed to %q, want image create and update", topics)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v after cancel, want nil", err)
	}
	select {
	case <-w.FirstPass():
	default:
		t.Error("FirstPass is not closed")
	}
}
