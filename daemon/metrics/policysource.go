package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SourceStatus is the policy source's state (--policy-source): the
// artifact in force and the last check of the source.
type SourceStatus struct {
	Source  string    `json:"source"`
	Digest  string    `json:"digest"`
	Fetched time.Time `json:"fetched"`
	// Stale: the artifact in force was taken from the state directory at
	// start because the source could not be checked, and no check has
	// succeeded since.
	Stale     bool      `json:"stale,omitempty"`
	LastCheck time.Time `json:"last_check,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Failures  int64     `json:"check_failures"`
}

// PolicySourceInForce notes which artifact is in force (policysource.Observer).
func (m *Metrics) PolicySourceInForce(source, digest string, fetched time.Time, stale bool) {
	m.updateSource(func(s *SourceStatus) {
		s.Source, s.Digest, s.Fetched, s.Stale = source, digest, fetched, stale
	})
}

// PolicySourceChecked notes how a check of the source ended (policysource.Observer).
func (m *Metrics) PolicySourceChecked(err error) {
	m.updateSource(func(s *SourceStatus) {
		s.LastCheck, s.LastError = m.now(), errString(err)
		if err != nil {
			s.Failures++
		} else {
			s.Stale = false
		}
	})
}

func (m *Metrics) updateSource(update func(*SourceStatus)) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state.source == nil {
		m.state.source = &SourceStatus{}
	}
	update(m.state.source)
}

func (m *Metrics) sourceStatus() *SourceStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state.source == nil {
		return nil
	}
	s := *m.state.source
	return &s
}

// sourceCollector reports the policy source's series, only when there is
// a source: a host with local policy files has none of them.
type sourceCollector struct{ m *Metrics }

var (
	sourceInfoDesc = prometheus.NewDesc("pullguard_policy_source_info",
		"Always 1 when the policy comes from a signed artifact (--policy-source); the labels say which source and which artifact (manifest digest) is in force.",
		[]string{"source", "digest"}, nil)
	sourceFetchedDesc = prometheus.NewDesc("pullguard_policy_source_fetch_timestamp_seconds",
		"When the artifact in force was fetched and its signature verified, in seconds since the Unix epoch.", nil, nil)
	sourceStaleDesc = prometheus.NewDesc("pullguard_policy_source_stale",
		"1 while the policy in force was taken from the state directory at start because the source could not be checked, and no check has succeeded since.", nil, nil)
	sourceLastOKDesc = prometheus.NewDesc("pullguard_policy_source_last_check_successful",
		"1 if the last check of the policy source succeeded (the artifact in force is the one it names), 0 if it failed (unreachable, gone, or a refused artifact).", nil, nil)
	sourceCheckTimeDesc = prometheus.NewDesc("pullguard_policy_source_last_check_timestamp_seconds",
		"When the policy source was last checked, in seconds since the Unix epoch.", nil, nil)
	sourceFailuresDesc = prometheus.NewDesc("pullguard_policy_source_check_failures_total",
		"Checks of the policy source that failed: registry unreachable, artifact gone, or a new artifact refused.", nil, nil)
)

func (c sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sourceInfoDesc, sourceFetchedDesc, sourceStaleDesc, sourceLastOKDesc, sourceCheckTimeDesc, sourceFailuresDesc} {
		ch <- d
	}
}

func (c sourceCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.sourceStatus()
	if s == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(sourceInfoDesc, 1, s.Source, s.Digest)
	gauge(sourceFetchedDesc, unixSeconds(s.Fetched))
	gauge(sourceStaleDesc, boolValue(s.Stale))
	gauge(sourceLastOKDesc, boolValue(s.LastError == ""))
	if !s.LastCheck.IsZero() {
		gauge(sourceCheckTimeDesc, unixSeconds(s.LastCheck))
	}
	ch <- prometheus.MustNewConstMetric(sourceFailuresDesc, prometheus.CounterValue, float64(s.Failures))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
