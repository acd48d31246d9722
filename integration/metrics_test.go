package integration

// End-to-end tests of pullguard's metrics and status (issue 15): the daemon guards the
// environment's containerd with both metrics outputs and the status socket on, and the test
// scrapes /metrics over HTTP, reads the textfile as node_exporter would, and runs `pullguard
// status`, after real events: a disallowed pull removed, a policy edit rejected, containerd
// restarted.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// textfileDeadline covers the textfile's 5 s rewrite interval on a loaded machine.
const textfileDeadline = 30 * time.Second

// samples are scraped series by "name{label="value",...}" (labels sorted), the text a person
// would grep for.
type samples map[string]float64

func parseSamples(t testing.TB, text string) samples {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("not Prometheus text: %v\n%s", err, text)
	}
	s := samples{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				v = float64(m.GetHistogram().GetSampleCount())
			default:
				continue
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			s[name+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return s
}

// scrape GETs url and returns its text.
func scrape(t testing.TB, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s\n%s", url, resp.Status, body)
	}
	return string(body)
}

// freeAddr is a 127.0.0.1 address nothing listens on now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitSamples polls read until every want holds (a series equal to its value) and every
// atLeast (a series at least its value), and returns the last samples.
func waitSamples(t testing.TB, what string, deadline time.Duration, read func() samples, want map[string]float64, atLeast ...map[string]float64) samples {
	t.Helper()
	var got samples
	Eventually(t, deadline, func() (bool, string) {
		got = read()
		var wrong []string
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				wrong = append(wrong, fmt.Sprintf("%s = %v (present %v), want %v", k, g, ok, v))
			}
		}
		for _, m := range atLeast {
			for k, v := range m {
				if g, ok := got[k]; !ok || g < v {
					wrong = append(wrong, fmt.Sprintf("%s = %v (present %v), want at least %v", k, g, ok, v))
				}
			}
		}
		sort.Strings(wrong)
		return len(wrong) == 0, what + ": " + strings.Join(wrong, "; ")
	})
	return got
}

func TestMetricsScrapedAfterRealEvents(t *testing.T) {
	e := RequireEnv(t)
	const ns = "k8s.io"
	dir := socketDir(t, "pgmetrics-")
	policyDir := t.TempDir()
	policyPath := WritePolicy(t, policyDir, policyWithRunning(e, "enforce", "keep"))
	hash := policyHash(t, policyPath)
	addr := freeAddr(t)
	textfile := filepath.Join(dir, "pullguard.prom")
	statusSock := filepath.Join(dir, "status.sock")
	startContainerdGuard(t, e, policyPath,
		"--metrics-listen", addr, "--metrics-textfile", textfile, "--status-socket", statusSock)

	url := "http://" + addr + "/metrics"
	fromHTTP := func() samples { return parseSamples(t, scrape(t, url)) }
	fromFile := func() samples {
		b, err := os.ReadFile(textfile)
		if err != nil {
			t.Fatalf("textfile: %v", err)
		}
		return parseSamples(t, string(b))
	}
	removed := `pullguard_actions_total{action="removed",runtime="containerd"}`
	reconciled := `pullguard_reconcile_runs_total{result="success",runtime="containerd"}`
	reconcileTime := `pullguard_reconcile_duration_seconds{runtime="containerd"}` // the histogram's count
	lastReconcile := `pullguard_reconcile_last_success_timestamp_seconds{runtime="containerd"}`
	events := `pullguard_events_received_total{runtime="containerd"}`
	connected := `pullguard_runtime_connected{runtime="containerd"}`
	connections := `pullguard_runtime_connections_total{runtime="containerd"}`
	reloadFailures := `pullguard_policy_reloads_total{result="failure"}`
	lastReloadOK := `pullguard_policy_last_reload_successful{}`
	info := fmt.Sprintf(`pullguard_policy_info{hash=%q,mode="enforce"}`, hash)

	// The exposition passes Prometheus' own lint.
	problems, err := promlint.New(strings.NewReader(scrape(t, url))).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	start := waitSamples(t, "at start", actDeadline, fromHTTP, map[string]float64{
		connected: 1, connections: 1, removed: 0, reloadFailures: 0, lastReloadOK: 1, info: 1,
		`pullguard_policy_rules{kind="allow"}`: 1, `pullguard_policy_rules{kind="deny"}`: 1,
		`pullguard_reconcile_runs_total{result="failure",runtime="containerd"}`: 0,
	}, map[string]float64{reconciled: 1, reconcileTime: 1, lastReconcile: float64(time.Now().Add(-time.Hour).Unix())})

	t.Log("a disallowed pull is removed")
	evil := e.Ref("evil/miner:latest")
	ctrPull(t, e, ns, evil)
	waitCtrImageGone(t, e, ns, evil)
	waitSamples(t, "after the removal", actDeadline, fromHTTP, map[string]float64{removed: 1},
		map[string]float64{events: start[events] + 1})

	t.Log("a policy edit is rejected")
	WritePolicy(t, policyDir, "mode: enforce\nallow:\n  - image: [not, a, string]\n")
	waitSamples(t, "after the rejected edit", actDeadline, fromHTTP, map[string]float64{
		lastReloadOK: 0, info: 1, // the old policy stays in force
	}, map[string]float64{reloadFailures: 1})

	t.Log("containerd restarts")
	if out, err := testenv("restart-containerd", e.Dir); err != nil {
		t.Fatalf("testenv.sh restart-containerd: %v\n%s", err, out)
	}
	// The reconnect reconciles: one more successful pass.
	waitSamples(t, "after containerd restarted", readyDeadline, fromHTTP, map[string]float64{connections: 2, connected: 1},
		map[string]float64{reconciled: start[reconciled] + 1})

	t.Log("the textfile says the same")
	got := waitSamples(t, "textfile", textfileDeadline, fromFile, map[string]float64{
		removed: 1, lastReloadOK: 0, connections: 2, connected: 1, info: 1,
	}, map[string]float64{reloadFailures: 1, reconciled: start[reconciled] + 1})
	for k := range got {
		if !strings.HasPrefix(k, "pullguard_") {
			t.Errorf("textfile holds %s: node_exporter has its own and would reject it", k)
		}
	}

	t.Log("pullguard status")
	out, stderr, code := runPullguard(t, e, "status", "--status-socket", statusSock)
	if code != 0 {
		t.Fatalf("pullguard status: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		"mode: enforce",
		"policy: " + hash + " (1 allow, 1 deny rules)",
		"files: " + policyPath,
		"last reload: FAILED",
		"containerd: connected",
		"removed 1",
	} {
		if !strings.Contains(oneSpace(out), want) {
			t.Errorf("pullguard status lacks %q:\n%s", want, out)
		}
	}
	if fi, err := os.Stat(statusSock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("status socket: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
}

// BenchmarkMetricsIdleRSS: what metrics cost an idle daemon guarding containerd. The daemon is
// started alternately without metrics and with both outputs on (/metrics scraped, the
// textfile written) five times each, in the same run; each start is measured as
// BenchmarkDaemonIdleRSS does (the highest of five VmRSS readings over 2 s after the first
// reconcile), with the RssAnon of that reading. The goal: RssAnon medians within 2 MiB of
// each other. RssAnon is the memory metrics allocate; VmRSS adds the executable's pages,
// which the daemon gives back after start-up and maps again as code runs, and within 2 s
// of start the scraped daemon has run a collection, an HTTP server and the encoders, the
// other nothing yet: their VmRSS differ by code pages either will map sooner or later.
// Both are reported.
func BenchmarkMetricsIdleRSS(b *testing.B) {
	e := RequireEnv(b)
	for _, name := range []string{"approved/busybox:1.0", "myorg/base:1.0", "library/nginx:1.25", "evil/miner:latest"} {
		ctrPull(b, e, "k8s.io", e.Ref(name))
	}
	path := WritePolicy(b, "", policyYAML(e, "audit", true))
	type reading struct{ rss, anon float64 }
	measure := func(metrics bool) reading {
		var args []string
		var url string
		if metrics {
			dir := socketDir(b, "pgrss-")
			addr := freeAddr(b)
			url = "http://" + addr + "/metrics"
			args = []string{"--metrics-listen", addr, "--metrics-textfile", filepath.Join(dir, "pullguard.prom")}
		}
		g := startContainerdGuard(b, e, path, args...)
		var peak reading
		for range 5 {
			if metrics {
				scrape(b, url)
			}
			time.Sleep(400 * time.Millisecond)
			st := procStatus(b, g.PID())
			if r := memMiB(b, st, "VmRSS"); r > peak.rss {
				peak = reading{r, memMiB(b, st, "RssAnon")}
			}
		}
		if err := g.Stop(b); err != nil {
			b.Errorf("pullguard: %v", err)
		}
		return peak
	}
	var offRSS, onRSS, offAnon, onAnon []float64
	for range 5 {
		off, on := measure(false), measure(true)
		offRSS, onRSS = append(offRSS, off.rss), append(onRSS, on.rss)
		offAnon, onAnon = append(offAnon, off.anon), append(onAnon, on.anon)
	}
	for _, v := range [][]float64{offRSS, onRSS, offAnon, onAnon} {
		sort.Float64s(v)
	}
	b.Logf("idle RSS MiB without metrics %v, with %v; RssAnon without %v, with %v", offRSS, onRSS, offAnon, onAnon)
	med := func(v []float64) float64 { return v[len(v)/2] }
	b.ReportMetric(med(offRSS), "RSS-off-MiB")
	b.ReportMetric(med(onRSS), "RSS-on-MiB")
	b.ReportMetric(med(offAnon), "anon-off-MiB")
	b.ReportMetric(med(onAnon), "anon-on-MiB")
	delta := med(onAnon) - med(offAnon)
	b.ReportMetric(delta, "delta-anon-MiB")
	if delta > 2 {
		b.Errorf("metrics add %.1f MiB of RssAnon to the idle daemon (medians %.1f / %.1f MiB); the goal is at most 2", delta, med(onAnon), med(offAnon))
	}
}

// oneSpace collapses runs of spaces (the status view's column padding) into one.
func oneSpace(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

// TestMetricsDockerAndAuthz: pullguard guards the environment's dockerd with its authorization
// plugin and /metrics on; a refused pull, an allowed pull and the plugin's other calls move
// the authorization and Docker series.
func TestMetricsDockerAndAuthz(t *testing.T) {
	e := RequireEnv(t)
	path := WritePolicy(t, "", policyWithRunning(e, "enforce", "keep"))
	addr := freeAddr(t)
	name := authzPluginName()
	StartDaemon(t, path, "--docker-host", e.DockerHost, "--containerd-address", "none",
		"--authz-socket", authzSocket(t, name), "--metrics-listen", addr)
	enableAuthzPlugin(t, e, name)
	url := "http://" + addr + "/metrics"
	fromHTTP := func() samples { return parseSamples(t, scrape(t, url)) }

	blocked := `pullguard_authz_requests_total{verdict="blocked"}`
	allowed := `pullguard_authz_requests_total{verdict="allowed"}`
	handled := `pullguard_authz_request_duration_seconds{}` // the histogram's count
	start := waitSamples(t, "at start", actDeadline, fromHTTP, map[string]float64{
		`pullguard_runtime_connected{runtime="docker"}`: 1, blocked: 0,
		`pullguard_authz_requests_total{verdict="error"}`: 0,
	}, map[string]float64{`pullguard_reconcile_runs_total{result="success",runtime="docker"}`: 1})

	evil, ok := e.Ref("evil/miner:latest"), e.Ref("approved/busybox:1.0")
	_, err := e.DockerErr(t, "pull", evil)
	requireRefused(t, err, name, deniedBy(name, evil))
	e.Docker(t, "pull", "--quiet", ok)
	waitSamples(t, "after a refused and an allowed pull", actDeadline, fromHTTP, map[string]float64{
		blocked: 1, `pullguard_actions_total{action="blocked",runtime="docker"}`: 1,
	}, map[string]float64{
		allowed: start[allowed] + 1,
		handled: start[handled] + 2, // every call is timed
		`pullguard_events_received_total{runtime="docker"}`: start[`pullguard_events_received_total{runtime="docker"}`] + 1,
	})
}
