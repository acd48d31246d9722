package metrics

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files")

type fixedPolicy struct{ p *policy.Policy }

func (f *fixedPolicy) Current() *policy.Policy { return f.p }

func testPolicy(t *testing.T, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(policy.Source{Name: "/etc/pullguard/policy.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestMetrics(t *testing.T) (*Metrics, *fixedPolicy) {
	t.Helper()
	src := &fixedPolicy{testPolicy(t, "mode: enforce\nallow:\n  - image: reg.example/**\n  - image: nginx\ndeny:\n  - image: '**'\n    tags: [latest]\n")}
	m := New(Options{Runtimes: []string{enforcer.RuntimeDocker, enforcer.RuntimeContainerd}, Policy: src, Version: "1.2.3"})
	return m, src
}

// Every series follows Prometheus' conventions (names, units, help, types).
func TestLint(t *testing.T) {
	m, _ := newTestMetrics(t)
	m.Record(enforcer.Record{Runtime: enforcer.RuntimeDocker, Action: enforcer.Removed})
	m.Reconciled(enforcer.RuntimeDocker, "start", time.Second, nil)
	m.AuthzRequest("blocked", time.Millisecond)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestReporterCountsAndPassesOn(t *testing.T) {
	m, _ := newTestMetrics(t)
	var got []enforcer.Record
	rep := m.Reporter(enforcer.ReporterFunc(func(r enforcer.Record) { got = append(got, r) }))
	rep.Report(enforcer.Record{Runtime: enforcer.RuntimeContainerd, Action: enforcer.Removed})
	rep.Report(enforcer.Record{Runtime: enforcer.RuntimeContainerd, Action: enforcer.Removed})
	rep.Report(enforcer.Record{Runtime: enforcer.RuntimeDocker, Action: enforcer.WouldBlock})
	if len(got) != 3 {
		t.Fatalf("passed on %d records, want 3", len(got))
	}
	for _, c := range []struct {
		runtime, action string
		want            float64
	}{{"containerd", "removed", 2}, {"docker", "would-block", 1}, {"docker", "removed", 0}} {
		if v := testutil.ToFloat64(m.actions.WithLabelValues(c.runtime, c.action)); v != c.want {
			t.Errorf("actions{%s,%s} = %v, want %v", c.runtime, c.action, v, c.want)
		}
	}
	// Every runtime × action series exists before anything happened.
	if n := testutil.CollectAndCount(m.actions); n != 2*len(actions) {
		t.Errorf("%d action series, want %d", n, 2*len(actions))
	}
}

func TestNilMetricsIsANoOp(t *testing.T) {
	var m *Metrics
	m.Record(enforcer.Record{})
	m.PolicyLoaded("x")
	m.PolicyRejected(errors.New("x"))
	m.Connected("docker", true)
	m.Reconciled("docker", "start", time.Second, nil)
	m.Event("docker")
	m.Behind("docker", "late event")
	m.AuthzRequest("allowed", time.Millisecond)
	rep := enforcer.ReporterFunc(func(enforcer.Record) {})
	if m.Reporter(rep) == nil {
		t.Fatal("nil Metrics must hand the reporter back")
	}
}

// The policy's series are read at scrape time: after a reload they show
// the new policy, never a stale copy.
func TestPolicySeriesFollowThePolicyInForce(t *testing.T) {
	m, src := newTestMetrics(t)
	want := func(text string) {
		t.Helper()
		if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(text), "pullguard_policy_info", "pullguard_policy_rules"); err != nil {
			t.Error(err)
		}
	}
	p := src.p
	want(`# HELP pullguard_policy_info Always 1; the labels say which policy is in force: its content hash and its mode (enforce, audit).
# TYPE pullguard_policy_info gauge
pullguard_policy_info{hash="` + p.Hash + `",mode="enforce"} 1
# HELP pullguard_policy_rules Rules in the policy in force, by kind (allow, deny).
# TYPE pullguard_policy_rules gauge
pullguard_policy_rules{kind="allow"} 2
pullguard_policy_rules{kind="deny"} 1
`)
	src.p = testPolicy(t, "mode: audit\nallow:\n  - image: nginx\n")
	m.PolicyLoaded(src.p.Hash)
	want(`# HELP pullguard_policy_info Always 1; the labels say which policy is in force: its content hash and its mode (enforce, audit).
# TYPE pullguard_policy_info gauge
pullguard_policy_info{hash="` + src.p.Hash + `",mode="audit"} 1
# HELP pullguard_policy_rules Rules in the policy in force, by kind (allow, deny).
# TYPE pullguard_policy_rules gauge
pullguard_policy_rules{kind="allow"} 1
pullguard_policy_rules{kind="deny"} 0
`)
}

func TestReloadResults(t *testing.T) {
	m, _ := newTestMetrics(t)
	m.PolicyRejected(errors.New("policy.yaml:1:7: mode: expected enforce or audit"))
	if v := testutil.ToFloat64(m.lastReloadOK); v != 0 {
		t.Errorf("last reload successful = %v after a rejection, want 0", v)
	}
	m.PolicyLoaded("abc")
	if v := testutil.ToFloat64(m.lastReloadOK); v != 1 {
		t.Errorf("last reload successful = %v after a load, want 1", v)
	}
	for r, want := range map[string]float64{ResultSuccess: 1, ResultFailure: 1} {
		if v := testutil.ToFloat64(m.reloads.WithLabelValues(r)); v != want {
			t.Errorf("reloads{%s} = %v, want %v", r, v, want)
		}
	}
}

// The textfile is what node_exporter's textfile collector reads: valid
// exposition text, only pullguard's series (node_exporter has its own go_*
// and process_* and rejects duplicates), replaced atomically.
func TestTextfile(t *testing.T) {
	m, _ := newTestMetrics(t)
	m.Record(enforcer.Record{Runtime: enforcer.RuntimeDocker, Action: enforcer.Removed})
	dir := t.TempDir()
	path := filepath.Join(dir, "pullguard.prom")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.RunTextfile(ctx, path, 20*time.Millisecond, func(err error) { t.Error(err) }) }()
	time.Sleep(100 * time.Millisecond)
	m.Record(enforcer.Record{Runtime: enforcer.RuntimeDocker, Action: enforcer.Removed})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("node_exporter could not parse the textfile: %v", err)
	}
	for name := range families {
		if !strings.HasPrefix(name, "pullguard_") {
			t.Errorf("textfile holds %s; only pullguard_* belong there", name)
		}
	}
	var removed float64
	for _, mt := range families["pullguard_actions_total"].GetMetric() {
		if label(mt, "runtime") == "docker" && label(mt, "action") == "removed" {
			removed = mt.GetCounter().GetValue()
		}
	}
	if removed != 2 {
		t.Errorf("textfile after stop: removed = %v, want 2 (the last write is at stop)", removed)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left beside the textfile: %v", entries)
	}
}

func TestTextfileInMissingDirectoryFails(t *testing.T) {
	m, _ := newTestMetrics(t)
	if err := m.WriteTextfile(filepath.Join(t.TempDir(), "nope", "pullguard.prom")); err == nil {
		t.Fatal("writing into a missing directory succeeded")
	}
}

func TestStatusSocket(t *testing.T) {
	m, src := newTestMetrics(t)
	m.Connected(enforcer.RuntimeContainerd, true)
	m.Reconciled(enforcer.RuntimeContainerd, "start", 1500*time.Millisecond, nil)
	m.Record(enforcer.Record{Runtime: enforcer.RuntimeContainerd, Action: enforcer.Removed})
	path := filepath.Join(t.TempDir(), "run", "status.sock")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	// A stale socket from a previous run is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	l, err := ListenStatus(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("status socket mode %v, want 0600 (root only)", fi.Mode().Perm())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.ServeStatus(ctx, l, "1.2.3") }()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	resp, err := c.Get("http://x/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /metrics: %s", resp.Status)
	}
	st := m.Snapshot("1.2.3")
	if st.PolicyHash != src.p.Hash || st.Mode != "enforce" || st.Actions["removed"] != 1 || len(st.Runtimes) != 2 {
		t.Errorf("snapshot: %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestListenStatusRefusesToReplaceAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.sock")
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenStatus(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("ListenStatus over a regular file: %v", err)
	}
}

func TestStatusRender(t *testing.T) {
	start := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	clock := start
	src := &fixedPolicy{testPolicy(t, "mode: enforce\nallow:\n  - image: reg.example/**\n")}
	m := New(Options{Runtimes: []string{"containerd", "docker"}, Policy: src, Now: func() time.Time { return clock }})
	clock = start.Add(2 * time.Second)
	m.Connected("containerd", true)
	m.Connected("docker", false)
	m.Reconciled("containerd", "start", 230*time.Millisecond, nil)
	m.Event("containerd")
	m.Record(enforcer.Record{Runtime: "containerd", Action: enforcer.Removed})
	m.Record(enforcer.Record{Runtime: "containerd", Action: enforcer.Failed})
	clock = start.Add(90 * time.Second)
	m.PolicyRejected(errors.New("/etc/pullguard/policy.yaml:3:9: tags: expected a list\n/etc/pullguard/policy.yaml:5:1: unknown key \"alow\""))
	var b strings.Builder
	if err := m.Snapshot("1.2.3").Render(&b, start.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	golden(t, "status.golden", b.String())
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
