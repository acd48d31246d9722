package metrics

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Status is the daemon's state as `pullguard status` shows it, and as the
// status socket serves it (JSON).
type Status struct {
	Version    string       `json:"version,omitempty"`
	Started    time.Time    `json:"started"`
	Mode       string       `json:"mode"`
	PolicyHash string       `json:"policy_hash"`
	Files      []string     `json:"policy_files"`
	AllowRules int          `json:"allow_rules"`
	DenyRules  int          `json:"deny_rules"`
	LastReload ReloadStatus `json:"last_reload"`
	// PolicySource is set when the policy comes from a signed artifact.
	PolicySource *SourceStatus   `json:"policy_source,omitempty"`
	Runtimes     []RuntimeStatus `json:"runtimes"`
	// Actions counts records by action, all runtimes together.
	Actions map[string]int64 `json:"actions"`
	// AuthzRequests counts authorization requests by verdict.
	AuthzRequests map[string]int64 `json:"authz_requests,omitempty"`
	// Lagging counts the times a guard fell behind its runtime's events.
	Lagging int64 `json:"lagging"`
}

// ReloadStatus is the outcome of the last policy load.
type ReloadStatus struct {
	Time  time.Time `json:"time"`
	OK    bool      `json:"ok"`
	Hash  string    `json:"hash,omitempty"`
	Error string    `json:"error,omitempty"`
}

// RuntimeStatus is one runtime's connection and last reconcile.
type RuntimeStatus struct {
	Name                  string        `json:"name"`
	Connected             bool          `json:"connected"`
	Since                 time.Time     `json:"since,omitzero"`
	Events                int64         `json:"events"`
	LastReconcile         time.Time     `json:"last_reconcile,omitzero"`
	LastReconcileDuration time.Duration `json:"last_reconcile_duration,omitempty"`
	LastReconcileError    string        `json:"last_reconcile_error,omitempty"`
}

// Snapshot is the status now. Counts are read back from the registry, so
// the status and a scrape never disagree.
func (m *Metrics) Snapshot(version string) Status {
	s := Status{Version: version, Actions: map[string]int64{}, AuthzRequests: map[string]int64{}}
	if p := m.currentPolicy(); p != nil {
		s.Mode, s.PolicyHash, s.Files = string(p.Mode), p.Hash, p.Files
		s.AllowRules, s.DenyRules = p.Counts()
	}
	events := map[string]int64{}
	families, _ := m.reg.Gather()
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			v := int64(mt.GetCounter().GetValue())
			switch f.GetName() {
			case "pullguard_actions_total":
				s.Actions[label(mt, "action")] += v
			case "pullguard_authz_requests_total":
				s.AuthzRequests[label(mt, "verdict")] += v
			case "pullguard_events_lagging_total":
				s.Lagging += v
			case "pullguard_events_received_total":
				events[label(mt, "runtime")] += v
			}
		}
	}
	m.mu.Lock()
	s.Started = m.state.started
	s.LastReload = m.state.lastReload
	if src := m.state.source; src != nil {
		c := *src
		s.PolicySource = &c
	}
	for _, rs := range m.state.runtimes {
		r := *rs
		r.Events = events[r.Name]
		s.Runtimes = append(s.Runtimes, r)
	}
	m.mu.Unlock()
	sort.Slice(s.Runtimes, func(i, j int) bool { return s.Runtimes[i].Name < s.Runtimes[j].Name })
	return s
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Render writes s as the one-screen text view of `pullguard status`;
// times are shown relative to now.
func (s Status) Render(w io.Writer, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	ver := ""
	if s.Version != "" {
		ver = " " + s.Version
	}
	p("pullguard%s, up %s", ver, ago(now, s.Started))
	p("mode:\t%s", s.Mode)
	p("policy:\t%s (%d allow, %d deny rules)", s.PolicyHash, s.AllowRules, s.DenyRules)
	p("files:\t%s", strings.Join(s.Files, ", "))
	switch {
	case s.LastReload.Time.IsZero():
		p("last reload:\t-")
	case s.LastReload.OK:
		p("last reload:\tok, %s ago (hash %s)", ago(now, s.LastReload.Time), s.LastReload.Hash)
	default:
		p("last reload:\tFAILED %s ago; the policy above stays in force:", ago(now, s.LastReload.Time))
		for _, line := range strings.Split(strings.TrimSpace(s.LastReload.Error), "\n") {
			p("\t  %s", line)
		}
	}
	if src := s.PolicySource; src != nil {
		stale := ""
		if src.Stale {
			stale = ", taken from the state directory at start: the source could not be checked"
		}
		p("source:\t%s, artifact %s fetched %s ago%s", src.Source, src.Digest, ago(now, src.Fetched), stale)
		switch {
		case src.LastCheck.IsZero():
		case src.LastError == "":
			p("last check:\tok, %s ago", ago(now, src.LastCheck))
		default:
			p("last check:\tFAILED %s ago; the artifact above stays in force: %s", ago(now, src.LastCheck), src.LastError)
		}
	}
	for _, r := range s.Runtimes {
		conn := "connected"
		if !r.Connected {
			conn = "NOT CONNECTED"
		}
		if !r.Since.IsZero() {
			conn += " for " + ago(now, r.Since)
		}
		rec := "no reconcile yet"
		if !r.LastReconcile.IsZero() {
			rec = fmt.Sprintf("last reconcile %s ago (took %s)", ago(now, r.LastReconcile), r.LastReconcileDuration.Round(time.Millisecond))
			if r.LastReconcileError != "" {
				rec += ", FAILED: " + r.LastReconcileError
			}
		}
		p("%s:\t%s, %d events, %s", r.Name, conn, r.Events, rec)
	}
	p("actions:\t%s", counts(s.Actions))
	if counts(s.AuthzRequests) != "none" {
		p("authorization:\t%s", counts(s.AuthzRequests))
	}
	p("fell behind:\t%d times", s.Lagging)
	return tw.Flush()
}

// counts renders a map as "a 1, b 2" in key order, non-zero values only.
func counts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "none"
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "0s"
	case d < time.Hour:
		return d.Truncate(time.Second).String()
	default:
		return d.Truncate(time.Minute).String()
	}
}
