package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// fakeGuard is a runtime guard the test drives: its first pass ends when
// the test says, it counts reconcile requests, it can fail, and it reports
// a record while it stops (which the reporter must still write).
type fakeGuard struct {
	name       string
	rep        enforcer.Reporter
	firstPass  chan struct{}
	fail       chan error
	reconciles atomic.Int32
	stopped    atomic.Bool
	stalled    atomic.Bool
}

func newFakeGuard(name string) *fakeGuard {
	return &fakeGuard{name: name, firstPass: make(chan struct{}), fail: make(chan error, 1)}
}

func (g *fakeGuard) Name() string               { return g.name }
func (g *fakeGuard) RequestReconcile()          { g.reconciles.Add(1) }
func (g *fakeGuard) FirstPass() <-chan struct{} { return g.firstPass }
func (g *fakeGuard) Stalled(time.Time, time.Duration) bool {
	return g.stalled.Load()
}
func (g *fakeGuard) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		g.rep.Report(enforcer.Record{Action: enforcer.Removed, Runtime: g.name, Event: "shutdown",
			Decision: policy.Decision{Input: "reg.example/evil/x:1"}, Mode: policy.ModeEnforce, Time: time.Now()})
		g.stopped.Store(true)
		return nil
	case err := <-g.fail:
		return err
	}
}

type daemonRun struct {
	guards []*fakeGuard
	notify chan string
	reload chan struct{}
	hook   *logtest.Hook
	cancel context.CancelFunc
	done   chan error
	policy string
}

func startDaemon(t *testing.T, names ...string) *daemonRun {
	t.Helper()
	return startDaemonWith(t, nil, names...)
}

// startDaemonWith starts the daemon with cfg changed by with (nil: none).
func startDaemonWith(t *testing.T, with func(*Config), names ...string) *daemonRun {
	t.Helper()
	c := notifySocket(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("mode: enforce\nallow:\n  - image: reg.example/**\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log, hook := logtest.NewNullLogger()
	d := &daemonRun{notify: make(chan string, 32), reload: make(chan struct{}), hook: hook, done: make(chan error, 1), policy: pol}
	for _, n := range names {
		d.guards = append(d.guards, newFakeGuard(n))
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			d.notify <- string(buf[:n])
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	cfg := Config{
		PolicyPath: pol, LoadOptions: policy.LoadOptions{InsecurePermissions: true}, Log: log,
		Reload: d.reload, StopTimeout: 3 * time.Second, ResyncInterval: -1,
		Guards: func(_ enforcer.PolicySource, rep enforcer.Reporter) ([]Guard, error) {
			out := make([]Guard, len(d.guards))
			for i, g := range d.guards {
				g.rep = rep
				out[i] = g
			}
			return out, nil
		},
	}
	if with != nil {
		with(&cfg)
	}
	go func() { d.done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
		}
	})
	return d
}

func (d *daemonRun) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-d.notify:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no sd_notify message")
		return ""
	}
}

func (d *daemonRun) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case m := <-d.notify:
		t.Fatalf("unexpected sd_notify message %q", m)
	case <-time.After(within):
	}
}

func TestRunReadyOnlyAfterEveryFirstPass(t *testing.T) {
	d := startDaemon(t, "docker", "containerd")
	close(d.guards[0].firstPass)
	d.none(t, 200*time.Millisecond) // containerd's first reconcile is not over
	close(d.guards[1].firstPass)
	if m := d.next(t); !strings.HasPrefix(m, "READY=1\nSTATUS=enforce mode") || !strings.Contains(m, "guarding docker, containerd") {
		t.Errorf("ready message %q", m)
	}
}

func TestRunReloadRequest(t *testing.T) {
	d := startDaemon(t, "docker", "containerd")
	close(d.guards[0].firstPass)
	close(d.guards[1].firstPass)
	d.next(t) // READY
	if err := os.WriteFile(d.policy, []byte("mode: audit\nallow:\n  - image: reg.example/**\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.reload <- struct{}{}
	if m := d.next(t); !strings.HasPrefix(m, "RELOADING=1") {
		t.Errorf("first message of a reload %q", m)
	}
	if m := d.next(t); !strings.HasPrefix(m, "READY=1\nSTATUS=audit mode") {
		t.Errorf("after the reload %q, want READY with the new mode", m)
	}
	for _, g := range d.guards {
		if n := g.reconciles.Load(); n < 1 {
			t.Errorf("%s: %d reconcile requests after a reload, want at least 1", g.name, n)
		}
	}
}

func TestRunGuardFailureStopsTheDaemon(t *testing.T) {
	d := startDaemon(t, "docker", "containerd")
	close(d.guards[0].firstPass)
	close(d.guards[1].firstPass)
	d.next(t) // READY
	d.guards[1].fail <- errors.New("wedged")
	select {
	case err := <-d.done:
		if err == nil || !strings.Contains(err.Error(), "containerd: wedged") {
			t.Errorf("Run returned %v, want the guard's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after a guard failed")
	}
	if !d.guards[0].stopped.Load() {
		t.Error("the other guard was not stopped")
	}
}

func TestRunShutdownOrder(t *testing.T) {
	d := startDaemon(t, "docker")
	close(d.guards[0].firstPass)
	d.next(t) // READY
	d.cancel()
	if m := d.next(t); m != "STOPPING=1" {
		t.Errorf("message on shutdown %q, want STOPPING=1", m)
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("Run returned %v after a stop, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	// The record the guard reported while stopping was written: the
	// reporter stops after the guards.
	found := false
	for _, e := range d.hook.AllEntries() {
		if e.Data[FieldAction] == "removed" && e.Data[FieldEvent] == "shutdown" {
			found = true
		}
	}
	if !found {
		t.Error("the record reported while the guard stopped was not written")
	}
}

func TestStalledGuardStopsTheWatchdog(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", "")
	g := newFakeGuard("docker")
	if err := stalled([]Guard{g}); err != nil {
		t.Fatalf("healthy guard: %v", err)
	}
	g.stalled.Store(true)
	if err := stalled([]Guard{g}); err == nil || !strings.Contains(err.Error(), "docker guard's event loop made no progress") {
		t.Errorf("stalled guard: %v", err)
	}
}
