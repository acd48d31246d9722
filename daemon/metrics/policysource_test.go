package metrics

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// sourceSeries are the pullguard_policy_source_* values gathered, by name
// (and the info series' labels).
func sourceSeries(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "pullguard_policy_source_") {
			continue
		}
		for _, mt := range f.GetMetric() {
			key := f.GetName()
			for _, l := range mt.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			out[key] = mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
		}
	}
	return out
}

func TestPolicySourceMetrics(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	m := New(Options{Now: func() time.Time { return now }})
	if got := sourceSeries(t, m); len(got) != 0 {
		t.Errorf("without a policy source: %v, want no pullguard_policy_source_* series", got)
	}
	if m.Snapshot("").PolicySource != nil {
		t.Error("status shows a policy source without one")
	}

	fetched := now.Add(-time.Hour)
	m.PolicySourceInForce("oci://r/p:prod", "sha256:abc", fetched, true)
	m.PolicySourceChecked(errors.New("cannot reach oci://r/p:prod (connection refused)"))
	got := sourceSeries(t, m)
	for k, v := range map[string]float64{
		"pullguard_policy_source_info,digest=sha256:abc,source=oci://r/p:prod": 1,
		"pullguard_policy_source_fetch_timestamp_seconds":                      float64(fetched.Unix()),
		"pullguard_policy_source_stale":                                        1,
		"pullguard_policy_source_last_check_successful":                        0,
		"pullguard_policy_source_last_check_timestamp_seconds":                 float64(now.Unix()),
		"pullguard_policy_source_check_failures_total":                         1,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	var b bytes.Buffer
	if err := m.Snapshot("").Render(&b, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"source:       oci://r/p:prod, artifact sha256:abc fetched 1h0m0s ago, taken from the state directory at start",
		"last check:   FAILED 0s ago; the artifact above stays in force: cannot reach oci://r/p:prod (connection refused)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status does not say %q:\n%s", want, b.String())
		}
	}

	m.PolicySourceChecked(nil)
	got = sourceSeries(t, m)
	if got["pullguard_policy_source_stale"] != 0 || got["pullguard_policy_source_last_check_successful"] != 1 {
		t.Errorf("after a successful check: %v", got)
	}
}
