package main

import (
	"testing"
	"time"
)

// recordingObserver notes what the guards tell it.
type recordingObserver struct{ calls []string }

func (o *recordingObserver) Reconciled(runtime, _ string, _ time.Duration, _ error) {
	o.calls = append(o.calls, "reconciled "+runtime)
}
func (o *recordingObserver) Connected(runtime string, _ bool) {
	o.calls = append(o.calls, "connected "+runtime)
}
func (o *recordingObserver) Behind(runtime, _ string) { o.calls = append(o.calls, "behind "+runtime) }
func (o *recordingObserver) Event(runtime string)     { o.calls = append(o.calls, "event "+runtime) }

// The releaser hears of the work a guard did (a reconcile ended, an event
// read), and the metrics still hear of everything.
func TestBusyObserver(t *testing.T) {
	m := &recordingObserver{}
	busy := 0
	o := busyObserver{m, func() { busy++ }}
	o.Connected("docker", true)
	o.Reconciled("docker", "connect", time.Millisecond, nil)
	o.Event("containerd")
	o.Behind("containerd", "a gap")
	want := []string{"connected docker", "reconciled docker", "event containerd", "behind containerd"}
	if len(m.calls) != len(want) {
		t.Fatalf("the metrics heard %q, want %q", m.calls, want)
	}
	for i := range want {
		if m.calls[i] != want[i] {
			t.Errorf("the metrics heard %q, want %q", m.calls, want)
			break
		}
	}
	if busy != 2 {
		t.Errorf("the releaser heard of %d pieces of work, want 2 (the reconcile and the event)", busy)
	}
}
