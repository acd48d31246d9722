package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// signedPolicy is a private policy whose allow rule requires a signature.
func signedPolicy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	key, err := os.ReadFile("../../policy/testdata/keys/ecdsa-p256.pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "team.pub"), key, 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "policy.yaml")
	yaml := "mode: enforce\nallow:\n  - image: registry.example.com/signed/**\n    signed-by:\n      - key: team.pub\n  - image: registry.example.com/open/**\n"
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// --offline contacts nothing: a reference that needs a signature is denied
// saying so, the others are judged as usual.
func TestCheckOffline(t *testing.T) {
	pol := signedPolicy(t)
	code, out, _ := pullguard(t, "", "check", "--policy", pol, "--offline", "--output", "json",
		"registry.example.com/signed/app:1", "registry.example.com/open/app:1")
	if code != exitDenied {
		t.Errorf("exit %d, want %d", code, exitDenied)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("output:\n%s", out)
	}
	if !strings.Contains(lines[0], `"allowed":false`) || !strings.Contains(lines[0], `but signature not verified (offline)","signature":"unverifiable"`) {
		t.Errorf("signed reference offline: %s", lines[0])
	}
	if !strings.Contains(lines[1], `"allowed":true`) || strings.Contains(lines[1], `"signature"`) {
		t.Errorf("open reference offline: %s", lines[1])
	}
}

// The runtime guards do not verify signatures: the daemon and scan refuse
// a policy with signed-by instead of removing validly signed images.
func TestGuardsRefuseSignedBy(t *testing.T) {
	pol := signedPolicy(t)
	want := pol + ":5:7: signed-by: the daemon does not verify signatures yet"
	code, _, stderr := pullguard(t, "", "daemon", "--policy", pol, "--docker-host", "none", "--containerd-address", "none", "--log-target", "stderr")
	if code != exitUsage || !strings.Contains(stderr, want) {
		t.Errorf("daemon: exit %d, stderr:\n%s\nwant it to contain %q", code, stderr, want)
	}
	code, _, stderr = pullguard(t, "", "scan", "--policy", pol, "--docker-host", "unix:///nonexistent.sock")
	if code != exitUsage || !strings.Contains(stderr, want) {
		t.Errorf("scan: exit %d, stderr:\n%s\nwant it to contain %q", code, stderr, want)
	}
	if code, _, stderr := pullguard(t, "", "policy", "validate", pol); code != 0 {
		t.Errorf("policy validate refuses a policy check and verify-image accept: exit %d %s", code, stderr)
	}
}
