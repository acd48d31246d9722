// Package metrics is pullguard's Prometheus instrumentation and the state
// `pullguard status` shows. The daemon's components tell a *Metrics what
// happened (a record reported, a policy loaded or rejected, a runtime
// connected, a reconcile done, an authorization request answered); it keeps
// counters in a private registry — not client_golang's global one, so
// nothing registers behind pullguard's back — and serves them over HTTP
// (--metrics-listen), as a node_exporter textfile (--metrics-textfile), and
// as a status snapshot on a root-only unix socket.
//
// Labels stay low-cardinality: runtime, action, result, verdict. Image
// names are never labels; they are in the journal.
package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// Reload results, the values of pullguard_policy_reloads_total's result.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
)

// actions are every enforcer.Action, so that each series exists (at 0)
// from the start: an alert on increase() needs the series before the first
// removal.
var actions = []enforcer.Action{
	enforcer.Removed, enforcer.Untagged, enforcer.Stopped, enforcer.Blocked, enforcer.Reported,
	enforcer.WouldRemove, enforcer.WouldStop, enforcer.WouldBlock, enforcer.Failed,
}

// Options configure New.
type Options struct {
	// Runtimes are the runtimes guarded (docker, containerd): their
	// series are created at 0 so that dashboards and alerts see them
	// before anything happens.
	Runtimes []string
	// Policy, when set, is read at every scrape for
	// pullguard_policy_info and the rule counts, so they always show the
	// policy in force.
	Policy enforcer.PolicySource
	// AuthzVerdicts are the verdicts the authorization plugin reports
	// (pullguard_authz_requests_total's label), created at 0.
	AuthzVerdicts []string
	// Version is pullguard's version, for pullguard_build_info.
	Version string
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Metrics is pullguard's instrumentation. Every method is safe for
// concurrent use, never blocks on I/O, and may be called on a nil *Metrics
// (metrics and status off), so callers need no checks.
type Metrics struct {
	reg    *prometheus.Registry
	now    func() time.Time
	policy policyCollector

	actions           *prometheus.CounterVec
	reloads           *prometheus.CounterVec
	lastReloadOK      prometheus.Gauge
	loadTime          prometheus.Gauge
	connected         *prometheus.GaugeVec
	connections       *prometheus.CounterVec
	reconciles        *prometheus.CounterVec
	reconcileDuration *prometheus.HistogramVec
	reconcileLastOK   *prometheus.GaugeVec
	eventsReceived    *prometheus.CounterVec
	eventsLagging     *prometheus.CounterVec
	logDropped        prometheus.Counter
	authzRequests     *prometheus.CounterVec
	authzDuration     prometheus.Histogram

	mu    sync.Mutex
	state state
}

// state is what `pullguard status` shows beyond the counters.
type state struct {
	started    time.Time
	lastReload ReloadStatus
	runtimes   map[string]*RuntimeStatus
	source     *SourceStatus // nil without --policy-source
}

// New returns Metrics with every series registered in a private registry.
func New(opts Options) *Metrics {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		now: opts.Now,
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullguard_actions_total",
			Help: "Decisions that led to an action or, in audit mode, a would-be action, by runtime and action (removed, untagged, stopped, blocked, reported, would-remove, would-stop, would-block, failed).",
		}, []string{"runtime", "action"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullguard_policy_reloads_total",
			Help: "Policy loads after start-up, by result: success (a changed policy is in force) or failure (rejected; the previous policy stays in force).",
		}, []string{"result"}),
		lastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pullguard_policy_last_reload_successful",
			Help: "1 if the last attempt to load the policy succeeded, 0 if it was rejected and an older policy is in force.",
		}),
		loadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pullguard_policy_load_timestamp_seconds",
			Help: "When the policy in force was loaded, in seconds since the Unix epoch.",
		}),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pullguard_runtime_connected",
			Help: "1 while pullguard is connected to the runtime and following its events, 0 while it is reconnecting.",
		}, []string{"runtime"}),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullguard_runtime_connections_total",
			Help: "Connections made to the runtime: the first, and one per reconnect after it was lost (a runtime restart).",
		}, []string{"runtime"}),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullguard_reconcile_runs_total",
			Help: "Reconcile passes (every image and container judged again), by runtime and result (success, failure).",
		}, []string{"runtime", "result"}),
		reconcileDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pullguard_reconcile_duration_seconds",
			Help:    "How long a reconcile pass took, by runtime.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"runtime"}),
		reconcileLastOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pullguard_reconcile_last_success_timestamp_seconds",
			Help: "When the last successful reconcile pass of the runtime ended, in seconds since the Unix epoch.",
		}, []string{"runtime"}),
		eventsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullguard_events_received_total",
			Help: "Runtime events received, by runtime.",
		}, []string{"runtime"}),
		eventsLagging: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullguard_events_lagging_total",
			Help: "Times the guard noticed it may have missed runtime events (an event read late, a pause in its own clock), by runtime; each time it reconciles at once to make up for them.",
		}, []string{"runtime"}),
		logDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pullguard_log_entries_dropped_total",
			Help: "Enforcement log entries dropped because the log could not keep up (the actions were still taken).",
		}),
		authzRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullguard_authz_requests_total",
			Help: "Docker authorization plugin requests (AuthZReq calls), by verdict: allowed (audit mode's would-be refusals included), blocked, or error (unreadable, refused).",
		}, []string{"verdict"}),
		authzDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pullguard_authz_request_duration_seconds",
			Help:    "How long pullguard took to answer a Docker authorization plugin request.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		state: state{runtimes: map[string]*RuntimeStatus{}},
	}
	m.state.started = m.now()
	m.reg.MustRegister(
		m.actions, m.reloads, m.lastReloadOK, m.loadTime, m.connected, m.connections,
		m.reconciles, m.reconcileDuration, m.reconcileLastOK,
		m.eventsReceived, m.eventsLagging, m.logDropped,
		m.authzRequests, m.authzDuration,
		&m.policy, sourceCollector{m},
		// process_* (resident memory, CPU, open files) but not go_*: the
		// Go collector's allocations on every scrape cost the idle daemon
		// more memory than its series are worth here.
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "pullguard_build_info",
			Help:        "Always 1; the version label says which pullguard runs.",
			ConstLabels: prometheus.Labels{"version": opts.Version},
		}, func() float64 { return 1 }),
	)
	for _, r := range []string{ResultSuccess, ResultFailure} {
		m.reloads.WithLabelValues(r)
	}
	for _, v := range opts.AuthzVerdicts {
		m.authzRequests.WithLabelValues(v)
	}
	for _, rt := range opts.Runtimes {
		for _, a := range actions {
			m.actions.WithLabelValues(rt, string(a))
		}
		for _, r := range []string{ResultSuccess, ResultFailure} {
			m.reconciles.WithLabelValues(rt, r)
		}
		m.reconcileDuration.WithLabelValues(rt)
		m.eventsReceived.WithLabelValues(rt)
		m.eventsLagging.WithLabelValues(rt)
		m.connected.WithLabelValues(rt).Set(0)
		m.connections.WithLabelValues(rt)
		m.state.runtimes[rt] = &RuntimeStatus{Name: rt}
	}
	m.lastReloadOK.Set(1)
	if opts.Policy != nil {
		m.SetPolicy(opts.Policy)
	}
	return m
}

// SetPolicy tells m where the policy in force is, once it has been loaded
// at start-up; until then the policy's series are absent.
func (m *Metrics) SetPolicy(src enforcer.PolicySource) {
	if m == nil || src == nil {
		return
	}
	m.policy.src.Store(&src)
	if p := src.Current(); p != nil {
		now := m.now()
		m.loadTime.Set(unixSeconds(now))
		m.mu.Lock()
		m.state.lastReload = ReloadStatus{Time: now, OK: true, Hash: p.Hash}
		m.mu.Unlock()
	}
}

func (m *Metrics) currentPolicy() *policy.Policy {
	if src := m.policy.src.Load(); src != nil {
		return (*src).Current()
	}
	return nil
}

// Registry is where every series is registered, for the outputs and tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Record counts one enforcement record.
func (m *Metrics) Record(rec enforcer.Record) {
	if m == nil {
		return
	}
	m.actions.WithLabelValues(rec.Runtime, string(rec.Action)).Inc()
}

// PolicyLoaded notes that the policy with hash is now in force after a
// reload.
func (m *Metrics) PolicyLoaded(hash string) {
	if m == nil {
		return
	}
	now := m.now()
	m.reloads.WithLabelValues(ResultSuccess).Inc()
	m.lastReloadOK.Set(1)
	m.loadTime.Set(unixSeconds(now))
	m.mu.Lock()
	m.state.lastReload = ReloadStatus{Time: now, OK: true, Hash: hash}
	m.mu.Unlock()
}

// PolicyRejected notes that a changed policy was rejected; the one in
// force stays.
func (m *Metrics) PolicyRejected(err error) {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues(ResultFailure).Inc()
	m.lastReloadOK.Set(0)
	m.mu.Lock()
	m.state.lastReload = ReloadStatus{Time: m.now(), OK: false, Error: errString(err)}
	m.mu.Unlock()
}

// Connected notes that pullguard connected to runtime (true) or lost it
// (false).
func (m *Metrics) Connected(runtime string, connected bool) {
	if m == nil {
		return
	}
	v := 0.0
	if connected {
		v = 1
		m.connections.WithLabelValues(runtime).Inc()
	}
	m.connected.WithLabelValues(runtime).Set(v)
	m.mu.Lock()
	rs := m.runtimeLocked(runtime)
	rs.Connected = connected
	rs.Since = m.now()
	m.mu.Unlock()
}

// Reconciled notes one reconcile pass of runtime (for trigger) that took
// d; err is nil when it succeeded.
func (m *Metrics) Reconciled(runtime, _ string, d time.Duration, err error) {
	if m == nil {
		return
	}
	now := m.now()
	result := ResultSuccess
	if err != nil {
		result = ResultFailure
	}
	m.reconciles.WithLabelValues(runtime, result).Inc()
	m.reconcileDuration.WithLabelValues(runtime).Observe(d.Seconds())
	if err == nil {
		m.reconcileLastOK.WithLabelValues(runtime).Set(unixSeconds(now))
	}
	m.mu.Lock()
	rs := m.runtimeLocked(runtime)
	rs.LastReconcile = now
	rs.LastReconcileDuration = d
	rs.LastReconcileError = errString(err)
	m.mu.Unlock()
}

// Event counts one event read from runtime's stream.
func (m *Metrics) Event(runtime string) {
	if m == nil {
		return
	}
	m.eventsReceived.WithLabelValues(runtime).Inc()
}

// Behind notes that the guard of runtime may have missed events (why says
// how it noticed) and reconciles to make up for them.
func (m *Metrics) Behind(runtime, _ string) {
	if m == nil {
		return
	}
	m.eventsLagging.WithLabelValues(runtime).Inc()
}

// LogEntriesDropped counts enforcement log entries the log lost.
func (m *Metrics) LogEntriesDropped(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.logDropped.Add(float64(n))
}

// AuthzRequest counts one authorization request answered with verdict in
// d.
func (m *Metrics) AuthzRequest(verdict string, d time.Duration) {
	if m == nil {
		return
	}
	m.authzRequests.WithLabelValues(verdict).Inc()
	m.authzDuration.Observe(d.Seconds())
}

func (m *Metrics) runtimeLocked(name string) *RuntimeStatus {
	rs, ok := m.state.runtimes[name]
	if !ok {
		rs = &RuntimeStatus{Name: name}
		m.state.runtimes[name] = rs
	}
	return rs
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// policyCollector reads the policy in force at every scrape, so its series
// can never disagree with what decides.
type policyCollector struct {
	src atomic.Pointer[enforcer.PolicySource]
}

var (
	policyInfoDesc = prometheus.NewDesc("pullguard_policy_info",
		"Always 1; the labels say which policy is in force: its content hash and its mode (enforce, audit).",
		[]string{"hash", "mode"}, nil)
	policyRulesDesc = prometheus.NewDesc("pullguard_policy_rules",
		"Rules in the policy in force, by kind (allow, deny).",
		[]string{"kind"}, nil)
)

func (c *policyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- policyInfoDesc
	ch <- policyRulesDesc
}

func (c *policyCollector) Collect(ch chan<- prometheus.Metric) {
	src := c.src.Load()
	if src == nil {
		return
	}
	p := (*src).Current()
	if p == nil {
		return
	}
	allow, deny := p.Counts()
	ch <- prometheus.MustNewConstMetric(policyInfoDesc, prometheus.GaugeValue, 1, p.Hash, string(p.Mode))
	ch <- prometheus.MustNewConstMetric(policyRulesDesc, prometheus.GaugeValue, float64(allow), "allow")
	ch <- prometheus.MustNewConstMetric(policyRulesDesc, prometheus.GaugeValue, float64(deny), "deny")
}

var _ enforcer.Observer = (*Metrics)(nil)

// Reporter returns a Reporter that counts every record and passes it on
// to next.
func (m *Metrics) Reporter(next enforcer.Reporter) enforcer.Reporter {
	if m == nil {
		return next
	}
	return enforcer.ReporterFunc(func(rec enforcer.Record) {
		m.Record(rec)
		next.Report(rec)
	})
}
