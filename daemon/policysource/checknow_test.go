package policysource

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/pullguard/pullguard/enforcer/registry"
)

type countChecks struct{ n atomic.Int32 }

func (c *countChecks) PolicySourceInForce(string, string, time.Time, bool) {}
func (c *countChecks) PolicySourceChecked(error)                           { c.n.Add(1) }

// TestCheckNow: a reload request checks the source at once, an hour before
// the next scheduled check, and every check is announced on Checked (the
// daemon writes its status line again).
func TestCheckNow(t *testing.T) {
	addr, stop := testRegistry(t)
	stop()
	logger, _ := logtest.NewNullLogger()
	obs := &countChecks{}
	s, err := New(Options{Source: "oci://" + addr + "/pullguard/policy:prod", Keys: []string{writeKey(t)},
		StateDir: filepath.Join(t.TempDir(), "state"), Log: logger, Interval: time.Hour, Observer: obs,
		Registry: registry.New(registry.Options{Timeout: time.Second})})
	if err != nil {
		t.Fatal(err)
	}
	keep(t, s, policyDir(t, "enforce"), "")
	if _, err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Checked():
	default:
		t.Fatal("the check at start was not announced")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx, func(string, logrus.Fields) error { return nil }) }()

	before := obs.n.Load()
	done := make(chan struct{})
	go func() { s.CheckNow(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("CheckNow did not return")
	}
	if obs.n.Load() != before+1 {
		t.Errorf("%d checks during CheckNow, want 1", obs.n.Load()-before)
	}
	select {
	case <-s.Checked():
	case <-time.After(time.Second):
		t.Error("the requested check was not announced")
	}
	// A stopped daemon does not wait for a check.
	stopped, cancelStopped := context.WithCancel(context.Background())
	cancelStopped()
	cancel()
	s.CheckNow(stopped)
}
