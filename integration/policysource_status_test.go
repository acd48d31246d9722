package integration

// The policy source and systemd (issue 29): the STATUS= line follows each check of the source
// (it says when the source cannot be checked and stops saying so when it can) without waiting for
// a policy change, and a reload request (SIGHUP) checks the source at once.

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPolicySourceStatusAndReload(t *testing.T) {
	e := RequireEnv(t)
	s := newPolicySourceEnv(t, e)
	state := filepath.Join(t.TempDir(), "state")
	source := "oci://" + s.repo + ":prod"
	start := func(t *testing.T, interval time.Duration) (*Pullguard, *notifySocket) {
		t.Helper()
		notify := listenNotify(t)
		t.Setenv("NOTIFY_SOCKET", notify.Path)
		p := StartPullguard(t, "daemon", "--log-target", "journald",
			"--docker-host", "none", "--containerd-address", e.ContainerdAddress, "--containerd-namespaces", UniqueName(t),
			"--policy", filepath.Join(t.TempDir(), "policy.yaml"), // absent: not read
			"--policy-source", source, "--policy-source-key", s.key("allowed"),
			"--policy-source-interval", interval.String(), "--state-dir", state)
		// (containerd's pre-pull warning may be there; this environment has no verifier.)
		if msg := notify.WaitFor(t, readyDeadline, "READY=1"); strings.Contains(msg, "policy source") {
			t.Fatalf("ready with a warning about the policy source: %q", msg)
		}
		return p, notify
	}
	first := s.push(t, s.policyDir(t, true, ""), "prod")
	s.sign(t, first, "allowed", false)

	t.Run("the status line follows the source's checks", func(t *testing.T) {
		d, notify := start(t, 2*time.Second)
		s.reg.stop(t)
		msg := waitStatusWith(t, notify, "policy source "+source)
		if !strings.Contains(msg, "cannot reach") || !strings.Contains(msg, "enforcing the last verified policy, artifact "+first) {
			t.Errorf("status while the registry is down: %q", msg)
		}
		s.reg.start(t)
		if msg := waitStatusWithout(t, notify, "policy source"); !strings.Contains(msg, "enforce mode") {
			t.Errorf("status once the registry is back: %q", msg)
		}
		if err := d.Stop(t); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a reload request checks the source", func(t *testing.T) {
		if s.reg.cmd == nil { // the subtest before failed with the registry stopped
			s.reg.start(t)
		}
		d, notify := start(t, time.Hour) // no scheduled check within the test
		second := s.push(t, s.policyDir(t, false, ""), "prod")
		s.sign(t, second, "allowed", false)
		d.Signal(t, syscall.SIGHUP)
		notify.WaitFor(t, notifyDeadline, "RELOADING=1")
		notify.WaitFor(t, actDeadline, "READY=1")
		// By READY=1 the new artifact is in force.
		if got := d.Entries(t, "MESSAGE_ID="+msgPolicyLoaded, "PULLGUARD_POLICY_DIGEST="+second); len(got) != 1 {
			t.Errorf("at READY=1 after SIGHUP, %d entries say artifact %s was loaded, want 1; output:\n%s", len(got), second, d.Output())
		} else if got[0]["PULLGUARD_TRIGGER"] != "policy source" {
			t.Errorf("PULLGUARD_TRIGGER = %q", got[0]["PULLGUARD_TRIGGER"])
		}
	})
}

// waitStatusWith returns the first STATUS= message holding substr.
func waitStatusWith(t *testing.T, n *notifySocket, substr string) string {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for time.Now().Before(end) {
		m := n.Next(t, time.Until(end))
		if st, ok := notifyFields(m)["STATUS"]; ok && strings.Contains(st, substr) {
			return m
		}
	}
	t.Fatalf("no STATUS= with %q within 20s", substr)
	return ""
}

// waitStatusWithout returns the first STATUS= message without substr.
func waitStatusWithout(t *testing.T, n *notifySocket, substr string) string {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for time.Now().Before(end) {
		m := n.Next(t, time.Until(end))
		if st, ok := notifyFields(m)["STATUS"]; ok && !strings.Contains(st, substr) {
			return m
		}
	}
	t.Fatalf("no STATUS= without %q within 20s", substr)
	return ""
}
