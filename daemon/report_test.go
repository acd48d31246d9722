package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

const testPolicy = `mode: enforce
default: deny
allow:
  - image: localhost:5000/approved/**
  - image: docker.io/library/nginx
    tags: ["1.*"]
deny:
  - image: "**"
    tags: [latest]
    reason: SEC-12 pin a version
`

func mustParse(t testing.TB, yaml string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(policy.Source{Name: "/etc/pullguard/policy.yaml", Data: []byte(yaml)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var testTime = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// reportCases are records as the adapters make them, decided by a real policy.
func reportCases(t testing.TB) []struct {
	name    string
	rec     enforcer.Record
	repeats int
} {
	p := mustParse(t, testPolicy)
	d := func(ref string) policy.Decision { return p.Decide(ref, testTime) }
	const cid = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const iid = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	return []struct {
		name    string
		rec     enforcer.Record
		repeats int
	}{
		{"removed docker image after pull", enforcer.Record{Action: enforcer.Removed, Runtime: enforcer.RuntimeDocker, Event: "pull", ImageID: iid, Mode: policy.ModeEnforce, Decision: d("localhost:5000/evil/miner:1")}, 0},
		{"untagged docker image", enforcer.Record{Action: enforcer.Untagged, Runtime: enforcer.RuntimeDocker, Event: "tag", ImageID: iid, Mode: policy.ModeEnforce, Decision: d("localhost:5000/approved/busybox:latest")}, 0},
		{"stopped containerd container", enforcer.Record{Action: enforcer.Stopped, Runtime: enforcer.RuntimeContainerd, Namespace: "k8s.io", Event: "reconcile", ContainerID: cid, Mode: policy.ModeEnforce, Decision: d("quay.io/evil/miner:2")}, 0},
		{"removed docker container", enforcer.Record{Action: enforcer.Removed, Runtime: enforcer.RuntimeDocker, Event: "create", ContainerID: "my-container", Mode: policy.ModeEnforce, Decision: d("quay.io/evil/miner:2")}, 0},
		{"blocked by authz, typosquat", enforcer.Record{Action: enforcer.Blocked, Runtime: enforcer.RuntimeDocker, Event: "authz", Mode: policy.ModeEnforce, Decision: d("ngnix:1.25")}, 0},
		{"would remove in audit mode", enforcer.Record{Action: enforcer.WouldRemove, Runtime: enforcer.RuntimeContainerd, Namespace: "default", Event: "/images/create", Mode: policy.ModeAudit, Decision: d("localhost:5000/evil/miner:1")}, 0},
		{"would stop in audit mode", enforcer.Record{Action: enforcer.WouldStop, Runtime: enforcer.RuntimeDocker, Event: "reconcile", ContainerID: cid, Mode: policy.ModeAudit, Decision: d("localhost:5000/evil/miner:1")}, 0},
		{"would block in audit mode", enforcer.Record{Action: enforcer.WouldBlock, Runtime: enforcer.RuntimeDocker, Event: "authz", Mode: policy.ModeAudit, Decision: d("localhost:5000/evil/miner:1")}, 0},
		{"running container reported", enforcer.Record{Action: enforcer.Reported, Runtime: enforcer.RuntimeDocker, Event: "reconcile", ContainerID: cid, ImageID: iid, Mode: policy.ModeEnforce, Decision: d("localhost:5000/evil/miner:1")}, 0},
		{"action failed", enforcer.Record{Action: enforcer.Failed, Runtime: enforcer.RuntimeDocker, Event: "pull", ImageID: iid, Mode: policy.ModeEnforce, Decision: d("localhost:5000/evil/miner:1"), Err: errors.New("removing image: conflict: image is being used by running container 0123456789ab")}, 0},
		{"unparsable reference", enforcer.Record{Action: enforcer.Removed, Runtime: enforcer.RuntimeContainerd, Namespace: "k8s.io", Event: "/images/create", Mode: policy.ModeEnforce, Decision: d("Not A Reference!")}, 0},
		{"repeats after flood window", enforcer.Record{Action: enforcer.Blocked, Runtime: enforcer.RuntimeContainerd, Namespace: "k8s.io", Event: "/images/create", Mode: policy.ModeEnforce, Decision: d("localhost:5000/evil/miner:1")}, 41},
	}
}

// renderGolden prints entries the way journalctl -o verbose would show
// them: fields sorted, empty ones absent.
func renderGolden(level logrus.Level, msg string, fields logrus.Fields) string {
	var b strings.Builder
	fmt.Fprintf(&b, "PRIORITY=%d\nMESSAGE=%s\n", journalPriority(level), msg)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%v\n", k, fields[k])
	}
	return b.String()
}

func TestRenderRecordGolden(t *testing.T) {
	var b strings.Builder
	for _, tc := range reportCases(t) {
		level, msg, fields := renderRecord(tc.rec, tc.repeats, "0123abcd4567ef89")
		fmt.Fprintf(&b, "== %s\n%s\n", tc.name, renderGolden(level, msg, fields))
	}
	golden(t, "report.golden", b.String())
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestRenderRecordFields(t *testing.T) {
	// What SREs filter on, independent of the golden file's wording.
	tests := map[string]struct {
		action       enforcer.Action
		wantID       string
		wantPriority logrus.Level
	}{
		"removed":      {enforcer.Removed, MessageIDActionTaken, logrus.WarnLevel},
		"untagged":     {enforcer.Untagged, MessageIDActionTaken, logrus.WarnLevel},
		"stopped":      {enforcer.Stopped, MessageIDActionTaken, logrus.WarnLevel},
		"blocked":      {enforcer.Blocked, MessageIDBlocked, logrus.WarnLevel},
		"reported":     {enforcer.Reported, MessageIDRunningReported, logrus.WarnLevel},
		"would-remove": {enforcer.WouldRemove, MessageIDWouldAct, logrus.WarnLevel},
		"would-stop":   {enforcer.WouldStop, MessageIDWouldAct, logrus.WarnLevel},
		"would-block":  {enforcer.WouldBlock, MessageIDWouldAct, logrus.WarnLevel},
		"failed":       {enforcer.Failed, MessageIDActionFailed, logrus.ErrorLevel},
	}
	p := mustParse(t, testPolicy)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rec := enforcer.Record{Action: tc.action, Runtime: "docker", Event: "pull", Mode: p.Mode,
				Decision: p.Decide("localhost:5000/evil/miner:latest", testTime)}
			level, msg, f := renderRecord(rec, 0, "")
			if level != tc.wantPriority {
				t.Errorf("level %s, want %s", level, tc.wantPriority)
			}
			want := logrus.Fields{
				FieldMessageID: tc.wantID,
				FieldAction:    string(tc.action),
				FieldImage:     "localhost:5000/evil/miner:latest",
				FieldRuntime:   "docker",
				FieldEvent:     "pull",
				FieldRule:      "/etc/pullguard/policy.yaml:8",
				FieldReason:    rec.Decision.Reason,
				FieldMode:      "enforce",
			}
			if len(f) != len(want) {
				t.Errorf("fields %v, want %v (empty fields omitted)", f, want)
			}
			for k, v := range want {
				if f[k] != v {
					t.Errorf("%s = %v, want %v", k, f[k], v)
				}
			}
			if !strings.Contains(msg, "localhost:5000/evil/miner:latest") || !strings.Contains(msg, "SEC-12 pin a version") {
				t.Errorf("MESSAGE %q does not say which image and why", msg)
			}
		})
	}
}

// A refusal before the fact names the hook that asked, so an SRE can tell
// containerd's NRI and Docker's plugin from the guards' after-the-fact acts.
func TestRenderRecordNamesTheHook(t *testing.T) {
	p := mustParse(t, testPolicy)
	for _, hook := range []string{"nri", "authz"} {
		rec := enforcer.Record{Action: enforcer.Blocked, Runtime: "containerd", Event: hook, Hook: hook, Mode: p.Mode,
			Decision: p.Decide("localhost:5000/evil/miner:latest", testTime)}
		if _, _, f := renderRecord(rec, 0, ""); f[FieldHook] != hook {
			t.Errorf("%s = %v, want %s", FieldHook, f[FieldHook], hook)
		}
	}
	rec := enforcer.Record{Action: enforcer.Removed, Runtime: "docker", Event: "pull", Mode: p.Mode,
		Decision: p.Decide("localhost:5000/evil/miner:latest", testTime)}
	if _, _, f := renderRecord(rec, 0, ""); f[FieldHook] != nil {
		t.Errorf("a guard's removal has %s = %v, want none", FieldHook, f[FieldHook])
	}
}

type fixedPolicy struct{ p *policy.Policy }

func (f fixedPolicy) Current() *policy.Policy { return f.p }

// fakeClock is a settable clock for flood control.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// runReporter starts r.Run and returns a function that stops it and waits.
func runReporter(t *testing.T, r *Reporter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitEntries waits until hook holds n entries, or fails at the deadline.
func waitEntries(t *testing.T, hook *logtest.Hook, n int) []logrus.Entry {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		all := hook.AllEntries()
		if len(all) >= n {
			out := make([]logrus.Entry, len(all))
			for i, e := range all {
				out[i] = *e
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d log entries after 5s, want %d", len(all), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReporterOneEntryPerRecord(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	p := mustParse(t, testPolicy)
	r := NewReporter(ReporterConfig{Log: log, Policy: fixedPolicy{p}})
	stop := runReporter(t, r)

	// Concurrent reports of distinct images: every one is written once.
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Report(enforcer.Record{Action: enforcer.Removed, Runtime: "docker", Event: "pull", Mode: p.Mode, Time: testTime,
				Decision: p.Decide(fmt.Sprintf("localhost:5000/evil/miner:%d", i), testTime)})
		}()
	}
	wg.Wait()
	entries := waitEntries(t, hook, n)
	stop()
	if got := len(hook.AllEntries()); got != n {
		t.Fatalf("%d entries for %d records", got, n)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		img := e.Data[FieldImage].(string)
		if seen[img] {
			t.Errorf("%s logged twice", img)
		}
		seen[img] = true
		if e.Data[FieldPolicyHash] != p.Hash {
			t.Errorf("%s = %v, want the policy's hash %s", FieldPolicyHash, e.Data[FieldPolicyHash], p.Hash)
		}
		if !e.Time.Equal(testTime) {
			t.Errorf("entry time %v, want the record's %v", e.Time, testTime)
		}
		if want := "removed docker image " + img + ": " + e.Data[FieldReason].(string); !strings.HasPrefix(e.Message, want) {
			t.Errorf("MESSAGE %q, want it to start with %q", e.Message, want)
		}
	}
}

func TestReporterNeverBlocks(t *testing.T) {
	// Run is not running: the log is "stuck". Report must still return,
	// and the loss must be reported once the log catches up.
	log, hook := logtest.NewNullLogger()
	p := mustParse(t, testPolicy)
	r := NewReporter(ReporterConfig{Log: log, QueueLength: 3})
	done := make(chan struct{})
	go func() {
		for i := range 10 {
			r.Report(enforcer.Record{Action: enforcer.Removed, Runtime: "docker", Decision: p.Decide(fmt.Sprintf("evil/miner:%d", i), testTime)})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Report blocked while the log was not being written")
	}
	runReporter(t, r)
	entries := waitEntries(t, hook, 4)
	var records, dropped int
	for _, e := range entries {
		switch e.Data[FieldMessageID] {
		case MessageIDActionTaken:
			records++
		case MessageIDReportsDropped:
			dropped++
			if e.Data[FieldDropped] != int64(7) || e.Level != logrus.ErrorLevel {
				t.Errorf("dropped-entries entry %q %v at %s, want 7 dropped at error", e.Message, e.Data, e.Level)
			}
		}
	}
	if records != 3 || dropped != 1 {
		t.Errorf("%d records and %d dropped-entries entries, want the 3 queued and 1", records, dropped)
	}
}

// PULLGUARD_POLICY_HASH names the policy that decided, not the one in force
// when the entry is written (a reload may land in between).
func TestReporterHashOfTheDecidingPolicy(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	deciding := mustParse(t, testPolicy)
	inForce := mustParse(t, testPolicy+"\n# edited\n")
	if deciding.Hash == inForce.Hash {
		t.Fatal("test policies share a hash")
	}
	r := NewReporter(ReporterConfig{Log: log, Policy: fixedPolicy{inForce}})
	runReporter(t, r)
	r.Report(enforcer.Record{Action: enforcer.Removed, Runtime: "docker", Event: "pull", Mode: deciding.Mode, Time: testTime,
		Decision: deciding.Decide("localhost:5000/evil/miner:1", testTime)})
	r.Report(enforcer.Record{Action: enforcer.Held, Runtime: "docker", Event: "reconcile", Mode: deciding.Mode, Time: testTime,
		Decision: policy.Decision{Reason: "the policy was just reloaded"}})
	entries := waitEntries(t, hook, 2)
	if got := entries[0].Data[FieldPolicyHash]; got != deciding.Hash {
		t.Errorf("%s = %v, want the deciding policy's %s (in force: %s)", FieldPolicyHash, got, deciding.Hash, inForce.Hash)
	}
	// A record made without a decision is stamped with the policy in force.
	if got := entries[1].Data[FieldPolicyHash]; got != inForce.Hash {
		t.Errorf("%s = %v for a record without a decision, want the policy in force %s", FieldPolicyHash, got, inForce.Hash)
	}
	if got := entries[1].Data[FieldMessageID]; got != MessageIDHeld {
		t.Errorf("held entry MESSAGE_ID %v, want %s", got, MessageIDHeld)
	}
	if want := "held docker removals and stops: the policy was just reloaded"; entries[1].Message != want {
		t.Errorf("held MESSAGE %q, want %q", entries[1].Message, want)
	}
}

// A decision by a signed-by rule carries its evidence in PULLGUARD_SIGNATURE.
func TestRenderRecordSignature(t *testing.T) {
	key, err := filepath.Abs("../policy/testdata/keys/ed25519.pub")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse(policy.Source{Name: "p.yaml", Data: []byte(
		"allow:\n  - image: registry.example.com/approved/**\n    signed-by: [{key: " + key + "}]\n")})
	if err != nil {
		t.Fatal(err)
	}
	const digest = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	ks := p.Allow[0].SignedBy
	for status, want := range map[policy.SignatureStatus]string{
		policy.SignatureVerified:     "verified:" + ks.Keys[0].Fingerprint,
		policy.SignatureMissing:      "missing",
		policy.SignatureInvalid:      "invalid",
		policy.SignatureUnverifiable: "unverifiable",
	} {
		res := policy.SignatureResult{Status: status, Reason: "test"}
		if status == policy.SignatureVerified {
			res.Key = ks.Keys[0]
		}
		ref, err := p.ParseRef("registry.example.com/approved/app:1@" + digest)
		if err != nil {
			t.Fatal(err)
		}
		d := p.DecideEvidence(ref, testTime, &policy.Evidence{Digest: digest, Results: map[string]policy.SignatureResult{ks.ID: res}})
		_, _, f := renderRecord(enforcer.Record{Action: enforcer.Removed, Runtime: "docker", Event: "pull", Mode: p.Mode, Decision: d}, 0, "")
		if f[FieldSignature] != want {
			t.Errorf("%s: %s = %v, want %s", status, FieldSignature, f[FieldSignature], want)
		}
	}
	// A decision no signed-by rule made has no such field.
	_, _, f := renderRecord(enforcer.Record{Action: enforcer.Removed, Runtime: "docker", Mode: p.Mode,
		Decision: p.Decide("evil.example.com/x:1", testTime)}, 0, "")
	if _, ok := f[FieldSignature]; ok {
		t.Errorf("%s set for a decision no signed-by rule made: %v", FieldSignature, f[FieldSignature])
	}
}
