package nri

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
)

// Without containerd the plugin keeps trying, says so once, lets the
// daemon become ready, and stops when asked.
func TestRunWithoutContainerd(t *testing.T) {
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	obs := &connections{}
	p := New(filepath.Join(t.TempDir(), "nri.sock"), enforcertest.NewPolicies(nil), nil, nil, &enforcertest.Recorder{}, log, WithObserver(obs))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.FirstPass():
	case <-time.After(5 * time.Second):
		t.Fatal("FirstPass not closed after a failed first connection")
	}
	time.Sleep(2 * minBackoff) // a retry or two
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil when stopped", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when ctx was done")
	}
	var warnings, retries int
	for _, e := range hook.AllEntries() {
		if e.Data[enforcer.FieldMessageID] == enforcer.MessageIDRuntimeDisconnected {
			warnings++
		}
		if e.Level == logrus.DebugLevel && e.Data[logrus.ErrorKey] != nil {
			retries++
		}
	}
	if warnings != 1 || retries == 0 {
		t.Errorf("%d disconnection warnings and %d retries logged at debug, want 1 and some", warnings, retries)
	}
	if got := obs.seen(); len(got) != 1 || got[0] != "containerd-nri down" {
		t.Errorf("observer told %q, want one containerd-nri down", got)
	}
}

// connections is an enforcer.Observer that keeps what Connected was told.
type connections struct {
	mu  sync.Mutex
	log []string
}

func (c *connections) Connected(runtime string, up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = append(c.log, runtime+map[bool]string{true: " up", false: " down"}[up])
}

func (c *connections) seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log)
}

func (c *connections) Reconciled(string, string, time.Duration, error) {}
func (c *connections) Behind(string, string)                           {}
func (c *connections) Event(string)                                    {}
