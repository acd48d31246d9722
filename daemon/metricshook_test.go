package daemon

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/daemon/metrics"
	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

type policyEvents struct {
	mu       sync.Mutex
	loaded   []string
	rejected []string
}

func (p *policyEvents) PolicyLoaded(hash string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loaded = append(p.loaded, hash)
}

func (p *policyEvents) PolicyRejected(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rejected = append(p.rejected, err.Error())
}

func (p *policyEvents) counts() (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.loaded), len(p.rejected)
}

// Run tells its PolicyObserver of every reload, taken or rejected; the
// load at start-up is not a reload.
func TestRunTellsThePolicyObserver(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("mode: enforce\nallow:\n  - image: reg.example/**\n")
	log := logrus.New()
	log.SetOutput(io.Discard)
	obs := &policyEvents{}
	g := newFakeGuard("docker")
	close(g.firstPass)
	reload := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	built := make(chan struct{})
	go func() {
		done <- Run(ctx, Config{
			PolicyPath: path, Log: log, Reload: reload, PolicyObserver: obs, ResyncInterval: -1, Settle: -1,
			// Only the reload requests reload: no file-change reload within the test.
			PolicyDebounce: time.Hour,
			Guards: func(_ enforcer.PolicySource, rep enforcer.Reporter) ([]Guard, error) {
				g.rep = rep
				close(built) // the policy is loaded
				return []Guard{g}, nil
			},
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	request := func() {
		t.Helper()
		select {
		case reload <- struct{}{}:
		case err := <-done:
			t.Fatalf("Run returned: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not take the reload request")
		}
	}
	wait := func(wantLoaded, wantRejected int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			l, r := obs.counts()
			if l == wantLoaded && r == wantRejected {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("loaded %d, rejected %d; want %d, %d", l, r, wantLoaded, wantRejected)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	select {
	case <-built:
	case err := <-done:
		t.Fatalf("Run returned: %v", err)
	}
	write("mode: bogus\n")
	request()
	wait(0, 1)
	if r := obs.rejected[0]; !strings.Contains(r, "policy.yaml:1:7") {
		t.Errorf("rejection %q does not say where", r)
	}
	write("mode: audit\nallow:\n  - image: reg.example/**\n")
	request()
	wait(1, 1)
	p, err := policy.Load(path, policy.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if obs.loaded[0] != p.Hash {
		t.Errorf("loaded hash %s, want %s", obs.loaded[0], p.Hash)
	}
}

// The Reporter's own entry about dropped entries is counted.
func TestMetricsHookCountsDroppedEntries(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	log.SetLevel(logrus.ErrorLevel)
	m := metrics.New(metrics.Options{})
	log.AddHook(MetricsHook(m))
	log.WithFields(logrus.Fields{FieldMessageID: MessageIDReportsDropped, FieldDropped: int64(7)}).Error("x")
	log.WithFields(logrus.Fields{FieldMessageID: MessageIDPolicyInvalid}).Error("not a drop")
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`# HELP pullguard_log_entries_dropped_total Enforcement log entries dropped because the log could not keep up (the actions were still taken).
# TYPE pullguard_log_entries_dropped_total counter
pullguard_log_entries_dropped_total 7
`), "pullguard_log_entries_dropped_total"); err != nil {
		t.Error(err)
	}
}
