package daemon

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/daemon/metrics"
	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// The metrics follow the journal entries the real policy watcher writes:
// a load at start-up is not a reload, a rejected edit counts as a failure,
// a fixed one as a success.
func TestMetricsHookFollowsThePolicyWatcher(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("mode: enforce\nallow:\n  - image: nginx\n")
	log := logrus.New()
	log.SetOutput(io.Discard)
	m := metrics.New(metrics.Options{Runtimes: []string{enforcer.RuntimeDocker}})
	log.AddHook(MetricsHook(m))
	w, err := NewPolicyWatcher(PolicyWatcherConfig{Path: path, LoadOptions: policy.LoadOptions{InsecurePermissions: true}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	m.SetPolicy(w)
	reloads := func(want string) {
		t.Helper()
		if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`# HELP pullguard_policy_reloads_total Policy loads after start-up, by result: success (a changed policy is in force) or failure (rejected; the previous policy stays in force).
# TYPE pullguard_policy_reloads_total counter
`+want), "pullguard_policy_reloads_total"); err != nil {
			t.Error(err)
		}
	}
	reloads("pullguard_policy_reloads_total{result=\"failure\"} 0\npullguard_policy_reloads_total{result=\"success\"} 0\n")
	write("mode: bogus\n")
	if w.Reload() == nil {
		t.Fatal("a bad policy was accepted")
	}
	reloads("pullguard_policy_reloads_total{result=\"failure\"} 1\npullguard_policy_reloads_total{result=\"success\"} 0\n")
	if st := m.Snapshot(""); st.LastReload.OK || !strings.Contains(st.LastReload.Error, "policy.yaml:1:7") {
		t.Errorf("status after a rejected edit: %+v", st.LastReload)
	}
	write("mode: audit\nallow:\n  - image: nginx\n")
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	reloads("pullguard_policy_reloads_total{result=\"failure\"} 1\npullguard_policy_reloads_total{result=\"success\"} 1\n")
	if st := m.Snapshot(""); !st.LastReload.OK || st.Mode != "audit" || st.LastReload.Hash != w.Current().Hash {
		t.Errorf("status after a fixed edit: %+v", st)
	}
}

func TestMetricsHookRuntimeConnection(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	m := metrics.New(metrics.Options{Runtimes: []string{enforcer.RuntimeContainerd}})
	log.AddHook(MetricsHook(m))
	entry := func(id string) {
		log.WithFields(logrus.Fields{FieldMessageID: id, enforcer.FieldRuntime: enforcer.RuntimeContainerd}).Info("x")
	}
	connected := func() bool {
		t.Helper()
		for _, r := range m.Snapshot("").Runtimes {
			if r.Name == enforcer.RuntimeContainerd {
				return r.Connected
			}
		}
		t.Fatal("containerd missing from the status")
		return false
	}
	entry(MessageIDRuntimeConnected)
	if !connected() {
		t.Error("not connected after the connected entry")
	}
	entry(MessageIDRuntimeDisconnected)
	if connected() {
		t.Error("still connected after the disconnected entry")
	}
	log.WithFields(logrus.Fields{FieldMessageID: MessageIDReportsDropped, FieldDropped: int64(7)}).Error("x")
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`# HELP pullguard_log_entries_dropped_total Enforcement log entries dropped because the log could not keep up (the actions were still taken).
# TYPE pullguard_log_entries_dropped_total counter
pullguard_log_entries_dropped_total 7
`), "pullguard_log_entries_dropped_total"); err != nil {
		t.Error(err)
	}
}
