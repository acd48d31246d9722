package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullguard/pullguard/daemon/metrics"
	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// pullguard status reads what a daemon's status socket serves.
func TestStatus(t *testing.T) {
	p, err := policy.Load(fixedPolicy(t), policy.LoadOptions{InsecurePermissions: true})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Options{Runtimes: []string{enforcer.RuntimeContainerd}, Policy: staticPolicy{p}})
	m.Connected(enforcer.RuntimeContainerd, true)
	m.Record(enforcer.Record{Runtime: enforcer.RuntimeContainerd, Action: enforcer.Removed})
	sock := filepath.Join(t.TempDir(), "status.sock")
	l, err := metrics.ListenStatus(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.ServeStatus(ctx, l, "1.2.3") }()
	defer func() { cancel(); <-done }()

	code, out, errOut := pullguard(t, "", "status", "--status-socket", sock)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"pullguard 1.2.3", "policy:", p.Hash, "containerd:", "connected", "removed 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	code, out, errOut = pullguard(t, "", "status", "--status-socket", sock, "--output", "json")
	var st metrics.Status
	if code != exitOK || json.Unmarshal([]byte(out), &st) != nil || st.PolicyHash != p.Hash || st.Actions["removed"] != 1 {
		t.Errorf("--output json: exit %d, %s%s", code, out, errOut)
	}
}

func TestStatusWithoutDaemon(t *testing.T) {
	code, _, errOut := pullguard(t, "", "status", "--status-socket", filepath.Join(t.TempDir(), "none.sock"))
	if code != exitUsage || !strings.Contains(errOut, "is the daemon running?") {
		t.Errorf("exit %d, stderr %q; want %d and a hint", code, errOut, exitUsage)
	}
	code, _, errOut = pullguard(t, "", "status", "--output", "yaml")
	if code != exitUsage || !strings.Contains(errOut, "--output") {
		t.Errorf("--output yaml: exit %d, %q", code, errOut)
	}
}
