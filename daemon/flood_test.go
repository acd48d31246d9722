package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

func blockedPull(p *policy.Policy, ns, ref string) enforcer.Record {
	return enforcer.Record{Action: enforcer.Blocked, Runtime: enforcer.RuntimeContainerd, Namespace: ns,
		Event: "/images/create", Mode: p.Mode, Decision: p.Decide(ref, testTime)}
}

func TestFloodGate(t *testing.T) {
	p := mustParse(t, testPolicy)
	a := blockedPull(p, "k8s.io", "localhost:5000/evil/miner:1")
	b := blockedPull(p, "k8s.io", "localhost:5000/evil/miner:2")
	aOtherNS := blockedPull(p, "default", "localhost:5000/evil/miner:1")
	aFailed := a
	aFailed.Action = enforcer.Failed
	aContainer := a
	aContainer.ContainerID = "0123456789ab"
	aOtherContainer := a
	aOtherContainer.ContainerID = "ba9876543210"
	t0 := testTime

	type step struct {
		at          time.Duration
		rec         enforcer.Record
		wantOK      bool
		wantRepeats int
	}
	tests := map[string][]step{
		"first is written, repeats within the window are not": {
			{0, a, true, 0},
			{10 * time.Second, a, false, 0},
			{59 * time.Second, a, false, 0},
		},
		"after the window, written with the suppressed count": {
			{0, a, true, 0},
			{10 * time.Second, a, false, 0},
			{20 * time.Second, a, false, 0},
			{30 * time.Second, a, false, 0},
			{60 * time.Second, a, true, 3},
			{70 * time.Second, a, false, 0},
			{120 * time.Second, a, true, 1},
		},
		"nothing suppressed: no repeat count": {
			{0, a, true, 0},
			{5 * time.Minute, a, true, 0},
		},
		"different image, namespace or action are different entries": {
			{0, a, true, 0},
			{1 * time.Second, b, true, 0},
			{2 * time.Second, aOtherNS, true, 0},
			{3 * time.Second, aFailed, true, 0},
			{4 * time.Second, a, false, 0},
		},
		"an image and a container of it are different entries; containers of one image are not": {
			{0, a, true, 0},
			{1 * time.Second, aContainer, true, 0},
			{2 * time.Second, aOtherContainer, false, 0},
			{3 * time.Second, a, false, 0},
		},
	}
	for name, steps := range tests {
		t.Run(name, func(t *testing.T) {
			g := newFloodGate(time.Minute, 100)
			for i, s := range steps {
				ok, repeats, evicted := g.admit(s.rec, t0.Add(s.at))
				if ok != s.wantOK || repeats != s.wantRepeats || evicted != nil {
					t.Errorf("step %d at %s: admit = %v, %d, %v; want %v, %d, nil", i, s.at, ok, repeats, evicted, s.wantOK, s.wantRepeats)
				}
			}
		})
	}
}

func TestFloodGateExpire(t *testing.T) {
	p := mustParse(t, testPolicy)
	a := blockedPull(p, "k8s.io", "localhost:5000/evil/miner:1")
	b := blockedPull(p, "k8s.io", "localhost:5000/evil/miner:2")
	t0 := testTime
	g := newFloodGate(time.Minute, 100)

	g.admit(a, t0)
	for i := 1; i <= 5; i++ {
		last := a
		last.ImageID = fmt.Sprint(i) // to tell which record is kept
		g.admit(last, t0.Add(time.Duration(i)*time.Second))
	}
	g.admit(b, t0.Add(30*time.Second))

	if due := g.expire(t0.Add(59 * time.Second)); len(due) != 0 {
		t.Errorf("expire before the window passed: %v", due)
	}
	// The retries stopped: the count is written without waiting for
	// another one, as the latest record plus 4 earlier ones.
	due := g.expire(t0.Add(61 * time.Second))
	if len(due) != 1 || due[0].repeats != 4 || due[0].rec.ImageID != "5" {
		t.Fatalf("expire = %+v, want the 5th record with 4 repeats", due)
	}
	if g.size() != 2 {
		t.Errorf("%d keys held, want 2", g.size())
	}
	// b was idle for a window and a's new window is empty: both forgotten.
	if due := g.expire(t0.Add(3 * time.Minute)); len(due) != 0 {
		t.Errorf("second expire = %v, want nothing", due)
	}
	if g.size() != 0 {
		t.Errorf("%d keys held after they went idle, want 0", g.size())
	}
	// A forgotten key starts afresh.
	if ok, _, _ := g.admit(a, t0.Add(3*time.Minute+time.Second)); !ok {
		t.Error("record after the key was forgotten was suppressed")
	}
}

func TestFloodGateBoundedMemory(t *testing.T) {
	p := mustParse(t, testPolicy)
	g := newFloodGate(time.Minute, 10)
	rec := func(i int) enforcer.Record { return blockedPull(p, "k8s.io", fmt.Sprintf("evil/miner:%d", i)) }
	g.admit(rec(0), testTime)
	g.admit(rec(0), testTime.Add(time.Second)) // suppressed: evicting it must not lose it
	var evicted []*floodSummary
	for i := 1; i <= 100; i++ {
		if _, _, e := g.admit(rec(i), testTime.Add(2*time.Second)); e != nil {
			evicted = append(evicted, e)
		}
		if g.size() > 10 {
			t.Fatalf("%d keys held, more than the limit of 10", g.size())
		}
	}
	if len(evicted) != 1 || evicted[0].rec.Decision.Input != "evil/miner:0" || evicted[0].repeats != 0 {
		t.Errorf("evicted summaries %+v, want the one suppressed record of evil/miner:0", evicted)
	}
}

func TestReporterFloodControl(t *testing.T) {
	// A kubelet retrying a denied pull every 10 seconds for 3 minutes, on
	// a fake clock.
	log, hook := logtest.NewNullLogger()
	p := mustParse(t, testPolicy)
	clock := &fakeClock{now: testTime}
	r := NewReporter(ReporterConfig{Log: log, Now: clock.Now, FloodWindow: time.Minute})
	stop := runReporter(t, r)

	rec := blockedPull(p, "k8s.io", "localhost:5000/evil/miner:1")
	for i := 0; i < 18; i++ { // 0s .. 170s
		r.Report(rec)
		clock.Advance(10 * time.Second)
	}
	// Written at 0s, 60s (5 repeats: 10..50s) and 120s (5 repeats: 70..110s);
	// 130..170s are held until the window ends or the reporter stops.
	if got := waitEntries(t, hook, 3); len(got) != 3 {
		t.Fatalf("%d entries before the reporter stopped, want 3", len(got))
	}
	stop()
	entries := waitEntries(t, hook, 4)
	if len(entries) != 4 {
		t.Fatalf("%d entries, want 4", len(entries))
	}
	wantRepeats := []any{nil, 5, 5, 4} // the last: 130..170s, one written + 4
	total := 0
	for i, e := range entries {
		if got := e.Data[FieldRepeats]; got != wantRepeats[i] {
			t.Errorf("entry %d: %s = %v, want %v", i, FieldRepeats, got, wantRepeats[i])
		}
		n, _ := e.Data[FieldRepeats].(int)
		total += 1 + n
		if n > 0 && !strings.Contains(e.Message, fmt.Sprintf("%d more times", n)) {
			t.Errorf("entry %d: MESSAGE %q does not say it was repeated %d times", i, e.Message, n)
		}
		if e.Data[FieldMessageID] != MessageIDBlocked || e.Level != logrus.WarnLevel {
			t.Errorf("entry %d: %v at %s", i, e.Data, e.Level)
		}
	}
	if total != 18 {
		t.Errorf("entries account for %d records, want all 18", total)
	}
}

func TestReporterFloodControlOff(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	p := mustParse(t, testPolicy)
	r := NewReporter(ReporterConfig{Log: log, FloodWindow: -1})
	runReporter(t, r)
	for range 5 {
		r.Report(blockedPull(p, "k8s.io", "localhost:5000/evil/miner:1"))
	}
	if got := len(waitEntries(t, hook, 5)); got != 5 {
		t.Errorf("%d entries, want 5", got)
	}
}
