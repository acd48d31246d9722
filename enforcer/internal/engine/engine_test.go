package engine

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

// fakeRuntime is a runtime whose events the test sends; it records what
// the engine asked of it.
type fakeRuntime struct {
	mu         sync.Mutex
	down       bool
	events     chan time.Time // an event is its emission time; its key is "k"
	errs       chan error
	reconciles []string
	handled    int
	subscribed chan struct{}
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{subscribed: make(chan struct{}, 10)}
}

func (f *fakeRuntime) Connect(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return "", errors.New("connection refused")
	}
	return "fake", nil
}

func (f *fakeRuntime) Subscribe(ctx context.Context, _ time.Time) (<-chan time.Time, <-chan error) {
	f.mu.Lock()
	f.events, f.errs = make(chan time.Time), make(chan error, 1)
	ev, errs := f.events, f.errs
	f.mu.Unlock()
	f.subscribed <- struct{}{}
	return ev, errs
}

func (f *fakeRuntime) Jobs(at time.Time) (time.Time, []Job[string, int]) {
	return at, []Job[string, int]{{Key: "k", Value: 1}}
}

func (f *fakeRuntime) Reconcile(_ context.Context, why string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reconciles = append(f.reconciles, why)
	return nil
}

func (f *fakeRuntime) Handle(context.Context, string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handled++
}

func (f *fakeRuntime) reconciled() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reconciles...)
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func runLoop(t *testing.T, f *fakeRuntime) *Loop[time.Time, string, int] {
	t.Helper()
	l := New[time.Time, string, int](f, Config{Runtime: "fake", Log: quiet(), MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return")
		}
	})
	select {
	case <-l.FirstPass():
	case <-time.After(5 * time.Second):
		t.Fatal("no first pass")
	}
	return l
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestLoopReconcilesWhenItFellBehind(t *testing.T) {
	f := newFakeRuntime()
	runLoop(t, f)
	<-f.subscribed
	eventually(t, "the connect reconcile", func() bool { return len(f.reconciled()) == 1 })

	f.events <- time.Now() // on time: handled, no reconcile
	eventually(t, "the event handled", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.handled == 1 })
	if got := f.reconciled(); len(got) != 1 {
		t.Fatalf("reconciles %q after a timely event", got)
	}
	// Emitted after the connect reconcile began, read over a second
	// later: events may have been dropped meanwhile.
	time.Sleep(1300 * time.Millisecond)
	f.events <- time.Now().Add(-1100 * time.Millisecond)
	eventually(t, "a reconcile because it fell behind", func() bool {
		got := f.reconciled()
		return len(got) == 2 && got[1] == "behind"
	})
}

func TestLoopReconnectsAndReconciles(t *testing.T) {
	f := newFakeRuntime()
	l := runLoop(t, f)
	<-f.subscribed
	f.mu.Lock()
	f.down = true
	f.errs <- errors.New("stream broke")
	f.mu.Unlock()
	time.Sleep(20 * time.Millisecond) // attempts fail while it is down
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	<-f.subscribed
	eventually(t, "a reconcile after the reconnect", func() bool { return len(f.reconciled()) == 2 })
	// Requests made while one is pending are one. The fake's reconcile
	// waits for its lock meanwhile, so that the loop cannot take each
	// request as it comes.
	f.mu.Lock()
	for range 10 {
		l.RequestReconcile()
	}
	f.mu.Unlock()
	eventually(t, "the requested reconcile", func() bool { return len(f.reconciled()) >= 3 })
	time.Sleep(20 * time.Millisecond)
	if got := f.reconciled(); len(got) > 4 || got[len(got)-1] != "requested" {
		t.Errorf("reconciles %q, want [connect connect requested] and at most one more", got)
	}
}

func TestExecutor(t *testing.T) {
	parse := func(mode string) *policy.Policy {
		p, err := policy.Parse(policy.Source{Name: "p.yaml", Data: []byte("mode: " + mode + "\n")})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	enforce, audit := parse("enforce"), parse("audit")
	removed := func(p *policy.Policy, do func(context.Context) (enforcer.Action, error)) Step {
		return Step{Policy: p, Record: enforcer.Record{Action: enforcer.Removed, Event: "pull"}, Do: do,
			AllowedBy: func(prev *policy.Policy) bool { return prev == audit }}
	}
	calls := 0
	do := func(context.Context) (enforcer.Action, error) { calls++; return "", nil }
	tests := []struct {
		name    string
		current *policy.Policy
		history *history
		step    Step
		dryRun  bool
		want    Outcome
		action  enforcer.Action // "" when nothing is reported
		calls   int
	}{
		{"enforce acts and reports", enforce, nil, removed(enforce, do), false, Reported, enforcer.Removed, 1},
		{"audit reports what it would do", audit, nil, removed(audit, do), false, Reported, enforcer.WouldRemove, 0},
		{"a reload since the plan: nothing", audit, nil, removed(enforce, do), false, Stale, "", 0},
		{"gone meanwhile: nothing to report", enforce, nil,
			removed(enforce, func(context.Context) (enforcer.Action, error) { return "", ErrGone }), false, Skipped, "", 0},
		{"a failure is reported with its error", enforce, nil,
			removed(enforce, func(context.Context) (enforcer.Action, error) { return "", errors.New("boom") }), false, Failed, enforcer.Failed, 0},
		{"the taken action wins", enforce, nil,
			removed(enforce, func(context.Context) (enforcer.Action, error) { return enforcer.Untagged, nil }), false, Reported, enforcer.Untagged, 0},
		{"held while a reload settles, if the previous policy allowed it", enforce,
			&history{prev: audit, until: time.Now().Add(time.Hour)}, removed(enforce, do), false, Held, enforcer.Held, 0},
		{"not held when the previous policy denied it too", enforce,
			&history{prev: enforce, until: time.Now().Add(time.Hour)}, removed(enforce, do), false, Reported, enforcer.Removed, 1},
		{"not held once settled", enforce,
			&history{prev: audit, until: time.Now().Add(-time.Second)}, removed(enforce, do), false, Reported, enforcer.Removed, 1},
		{"dry run reports the planned action and does nothing", audit, nil, removed(audit, do), true, Reported, enforcer.Removed, 0},
		{"completed once done", enforce, nil, completed(removed(enforce, do)), false, Reported, enforcer.Removed, 1},
		{"not completed when nothing was done", audit, nil, completed(removed(audit, do)), false, Reported, enforcer.WouldRemove, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls = 0
			rec := &enforcertest.Recorder{}
			var src enforcer.PolicySource = enforcertest.NewPolicies(tc.current)
			if tc.history != nil {
				tc.history.Policies = enforcertest.NewPolicies(tc.current)
				src = tc.history
			}
			var heldUntil time.Time
			x := &Executor{Runtime: "docker", Policies: src, Reporter: rec, Now: time.Now, DryRun: tc.dryRun,
				Hold: func(until time.Time) { heldUntil = until }}
			if got := x.Execute(context.Background(), tc.step); got != tc.want {
				t.Errorf("outcome %d, want %d", got, tc.want)
			}
			recs := rec.Records()
			switch {
			case tc.action == "" && len(recs) != 0:
				t.Errorf("reported %+v, want nothing", recs)
			case tc.action != "" && (len(recs) != 1 || recs[0].Action != tc.action):
				t.Errorf("reported %+v, want one %s", recs, tc.action)
			case tc.action == enforcer.Failed && recs[0].Err == nil:
				t.Error("failed without its error")
			}
			if tc.calls > 0 && calls != tc.calls {
				t.Errorf("acted %d times, want %d", calls, tc.calls)
			}
			if tc.want == Held && heldUntil.IsZero() {
				t.Error("a hold did not ask for a reconcile when it ends")
			}
			if tc.step.Complete != nil && len(recs) == 1 && (recs[0].ImageID == "completed") != (tc.calls > 0) {
				t.Errorf("record's image ID %q after %d acts: completed only once done", recs[0].ImageID, tc.calls)
			}
		})
	}
}

// completed has s complete its record with a marker image ID.
func completed(s Step) Step {
	s.Complete = func(rec *enforcer.Record) { rec.ImageID = "completed" }
	return s
}

// history is a policy source that says a reload is settling.
type history struct {
	*enforcertest.Policies
	prev  *policy.Policy
	until time.Time
}

func (h *history) Settling() (*policy.Policy, time.Time) { return h.prev, h.until }

// behindObserver records what the loop said about falling behind.
type behindObserver struct {
	nopObserver
	mu   sync.Mutex
	whys []string
}

func (o *behindObserver) Behind(_, why string) {
	o.mu.Lock()
	o.whys = append(o.whys, why)
	o.mu.Unlock()
}

// TestLoopNoticesAGapInItsOwnClock drives the event reader with heartbeats
// whose times the test chooses: a process that was stopped (SIGSTOP) sees
// its next heartbeat arrive long after the previous one, and must
// reconcile at once, since the runtime may have dropped events meanwhile;
// heartbeats on time must not.
func TestLoopNoticesAGapInItsOwnClock(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limit  time.Duration
		gaps   []time.Duration // between successive heartbeats
		behind int             // the heartbeat (1-based) that must say so; 0: none
	}{
		{"heartbeats on time", time.Second, []time.Duration{heartbeat, heartbeat, heartbeat}, 0},
		{"a heartbeat late by less than the limit", time.Second, []time.Duration{heartbeat, heartbeat + 900*time.Millisecond, heartbeat}, 0},
		{"stopped for three seconds", time.Second, []time.Duration{heartbeat, heartbeat, 3 * time.Second, heartbeat}, 3},
		{"stopped right after the stream began", time.Second, []time.Duration{5 * time.Second, heartbeat}, 1},
		{"a smaller limit", 100 * time.Millisecond, []time.Duration{heartbeat, heartbeat + 200*time.Millisecond}, 2},
		{"detection off", -1, []time.Duration{heartbeat, time.Minute, heartbeat}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &behindObserver{}
			l := New[time.Time, string, int](newFakeRuntime(), Config{Runtime: "fake", Log: quiet(), LagLimit: tc.limit, Observer: obs}, nil)
			ctx, cancel := context.WithCancel(context.Background())
			ticks := make(chan time.Time)
			done := make(chan error, 1)
			// The reader starts its clock when it starts; the first
			// heartbeat is counted from a moment no later than that.
			start := time.Now()
			go func() { done <- l.read(ctx, start, ticks, nil, make(chan error)) }()
			at := start
			for i, gap := range tc.gaps {
				at = at.Add(gap)
				ticks <- at
				if tc.behind == i+1 {
					// The observer is told before the request is made.
					select {
					case why := <-l.reconcileReq:
						if why != "behind" {
							t.Errorf("reconcile asked for as %q, want behind", why)
						}
					case <-time.After(5 * time.Second):
						t.Fatalf("heartbeat %d, %v after the one before: no reconcile asked for", i+1, gap)
					}
				}
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("read returned %v, want context.Canceled", err)
			}
			obs.mu.Lock()
			defer obs.mu.Unlock()
			switch {
			case tc.behind == 0 && len(obs.whys) > 0:
				t.Errorf("fell behind: %q; want nothing", obs.whys)
			case tc.behind > 0 && (len(obs.whys) != 1 || !strings.Contains(obs.whys[0], "clock jumped")):
				t.Errorf("fell behind: %q; want once, saying the clock jumped", obs.whys)
			}
			if tc.behind == 0 {
				select {
				case why := <-l.reconcileReq:
					t.Errorf("a reconcile was asked for (%s)", why)
				default:
				}
			}
		})
	}
}
