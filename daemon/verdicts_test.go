package daemon

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// verdictStore records what the daemon asks of it, and when.
type verdictStore struct {
	mu    sync.Mutex
	calls []string
}

func (s *verdictStore) note(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, what)
}

func (s *verdictStore) Load(hash string) { s.note("load " + hash) }
func (s *verdictStore) Save(hash string) error {
	s.note("save " + hash)
	return nil
}

func (s *verdictStore) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

// TestRunKeepsVerdicts: the kept verdicts are loaded under the policy in
// force before any guard reconciles, and written once the first
// reconciles are over and again when the daemon stops.
func TestRunKeepsVerdicts(t *testing.T) {
	store := &verdictStore{}
	d := startDaemonWith(t, func(c *Config) { c.Verdicts = store }, "containerd")
	time.Sleep(100 * time.Millisecond) // the guard runs, its first pass not over
	calls := store.got()
	if len(calls) != 1 || !strings.HasPrefix(calls[0], "load ") || len(calls[0]) < len("load ")+8 {
		t.Fatalf("before the first pass: %q, want one load under the policy's hash", calls)
	}
	hash := strings.TrimPrefix(calls[0], "load ")
	close(d.guards[0].firstPass)
	d.next(t) // READY
	Eventually(t, func() bool { return len(store.got()) == 2 })
	if calls := store.got(); calls[1] != "save "+hash {
		t.Errorf("after the first pass: %q, want a save", calls)
	}
	d.cancel()
	<-d.done
	if calls := store.got(); len(calls) != 3 || calls[2] != "save "+hash {
		t.Errorf("after the stop: %q, want a last save", calls)
	}
}

// checkedFeed is a policy feed that is checked when the test says, or
// when the daemon asks (a reload request).
type checkedFeed struct {
	checks chan struct{}
	asked  chan struct{}
}

func (f *checkedFeed) Run(ctx context.Context, _ func(string, logrus.Fields) error) error {
	<-ctx.Done()
	return nil
}

func (f *checkedFeed) CheckNow(context.Context) { f.asked <- struct{}{} }
func (f *checkedFeed) Checked() <-chan struct{} { return f.checks }

// TestRunStatusFollowsTheFeed: the status line is written again when a
// check of the policy source changes what it says (a failure, a success
// after one), not only when the policy changes; a reload request checks
// the source before READY=1.
func TestRunStatusFollowsTheFeed(t *testing.T) {
	var mu sync.Mutex
	warning := ""
	feed := &checkedFeed{checks: make(chan struct{}, 1), asked: make(chan struct{}, 1)}
	setup := func() []string {
		mu.Lock()
		defer mu.Unlock()
		if warning == "" {
			return nil
		}
		return []string{warning}
	}
	d := startDaemonWith(t, func(c *Config) { c.PolicyFeed, c.SetupWarnings = feed, setup }, "containerd")
	close(d.guards[0].firstPass)
	if m := d.next(t); strings.Contains(m, "WARNING") {
		t.Fatalf("ready %q", m)
	}
	mu.Lock()
	warning = "policy source oci://reg.example/p:1: cannot reach it (connection refused)"
	mu.Unlock()
	feed.checks <- struct{}{}
	if m := d.next(t); !strings.HasPrefix(m, "STATUS=") || !strings.Contains(m, "WARNING: "+warning) {
		t.Errorf("after a failed check %q, want the status line with the failure", m)
	}
	feed.checks <- struct{}{} // the same again: nothing new to say
	d.none(t, 200*time.Millisecond)
	mu.Lock()
	warning = ""
	mu.Unlock()
	feed.checks <- struct{}{}
	if m := d.next(t); !strings.HasPrefix(m, "STATUS=") || strings.Contains(m, "WARNING") {
		t.Errorf("after a good check %q, want the status line without the warning", m)
	}

	d.reload <- struct{}{}
	if m := d.next(t); !strings.HasPrefix(m, "RELOADING=1") {
		t.Errorf("reload: %q", m)
	}
	select {
	case <-feed.asked:
	case <-time.After(5 * time.Second):
		t.Fatal("a reload request did not check the policy source")
	}
	if m := d.next(t); !strings.HasPrefix(m, "READY=1") {
		t.Errorf("after the reload %q", m)
	}
}

// Eventually polls cond for up to 5 s.
func Eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}
