package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// pullguard runs the CLI in-process as a user would run the binary.
func pullguard(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden (go test ./cmd/pullguard -update): %v", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// fixedPolicy copies the test policy to a private file with safe
// permissions, as an installed policy would have.
func fixedPolicy(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("testdata/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const at = "--at=2026-11-23T12:00:00Z"

func TestCheck(t *testing.T) {
	pol := fixedPolicy(t)
	refs := []string{"nginx:1.25", "nginx", "localhost:5000/approved/busybox:1.0",
		"localhost:5000.evil.io/approved/busybox:1.0", "myorg-base:2.0", "ghcr.io/acme/legacy:3", "Bad Ref"}
	cases := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
	}{
		{"text", append([]string{"check", "--policy", pol, at}, refs...), "", 1},
		{"json", append([]string{"check", "--policy", pol, at, "-o", "json"}, refs...), "", 1},
		{"all-allowed", []string{"check", "--policy", pol, at, "nginx:1.25", "localhost:5000/approved/a/b:2"}, "", 0},
		{"stdin", []string{"check", "--policy", pol, at, "-"}, "# images on web-1\nnginx:1.25\n\nlocalhost:5000/evil/miner:latest\n", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := pullguard(t, tc.stdin, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit status %d, want %d (stderr: %s)", code, tc.wantCode, errOut)
			}
			golden(t, "check-"+tc.name, strings.ReplaceAll(out, pol, "POLICY"))
		})
	}
}

func TestCheckUsageAndPolicyErrors(t *testing.T) {
	pol := fixedPolicy(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("mode: sometimes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(t.TempDir(), "open.yaml")
	if err := os.WriteFile(open, []byte("mode: enforce\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o666)
	cases := map[string]struct {
		args    []string
		stderr  string
		stdin   string
		nostdin bool
	}{
		"no references":    {args: []string{"check", "--policy", pol}, stderr: "requires at least 1 arg"},
		"empty stdin":      {args: []string{"check", "--policy", pol, "-"}, stderr: "no references to check"},
		"bad output":       {args: []string{"check", "--policy", pol, "-o", "yaml", "x"}, stderr: "--output must be text or json"},
		"bad flag":         {args: []string{"check", "--nope", "x"}, stderr: "unknown flag: --nope"},
		"missing policy":   {args: []string{"check", "--policy", "/nonexistent/policy.yaml", "nginx"}, stderr: "/nonexistent/policy.yaml: policy file does not exist"},
		"invalid policy":   {args: []string{"check", "--policy", bad, "nginx"}, stderr: bad + ":1:7: mode: expected enforce or audit, got \"sometimes\""},
		"unsafe policy":    {args: []string{"check", "--policy", open, "nginx"}, stderr: "writable by group or others"},
		"bad at":           {args: []string{"check", "--policy", pol, "--at", "tomorrow", "nginx"}, stderr: "--at:"},
		"validate invalid": {args: []string{"policy", "validate", bad}, stderr: "mode: expected enforce or audit"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := pullguard(t, tc.stdin, tc.args...)
			if code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", errOut, tc.stderr)
			}
		})
	}
}

func TestInsecurePermissionsFlagAndEnv(t *testing.T) {
	open := filepath.Join(t.TempDir(), "open.yaml")
	if err := os.WriteFile(open, []byte("allow:\n  - image: nginx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o666); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := pullguard(t, "", "check", "--policy", open, "--insecure-policy-permissions", "nginx:1"); code != 0 {
		t.Errorf("flag: exit %d, %s", code, errOut)
	}
	t.Setenv("PULLGUARD_POLICY", open)
	t.Setenv("PULLGUARD_INSECURE_POLICY_PERMISSIONS", "true")
	if code, _, errOut := pullguard(t, "", "check", "nginx:1"); code != 0 {
		t.Errorf("environment: exit %d, %s", code, errOut)
	}
	t.Setenv("PULLGUARD_INSECURE_POLICY_PERMISSIONS", "maybe")
	if code, _, errOut := pullguard(t, "", "check", "nginx:1"); code != 2 || !strings.Contains(errOut, "PULLGUARD_INSECURE_POLICY_PERMISSIONS") {
		t.Errorf("bad environment value: exit %d, %s", code, errOut)
	}
}

func TestValidate(t *testing.T) {
	pol := fixedPolicy(t)
	code, out, errOut := pullguard(t, "", "policy", "validate", "--policy", pol)
	if code != 0 || !strings.HasPrefix(out, "policy is valid: mode=enforce default=deny running=keep allow=4 deny=1 hash=") {
		t.Errorf("validate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// Every problem is listed, not just the first.
	dir := t.TempDir()
	two := filepath.Join(dir, "two.yaml")
	os.WriteFile(two, []byte("mode: x\nallow:\n  - image: \"\"\n  - tags: [1]\n"), 0o600)
	code, _, errOut = pullguard(t, "", "policy", "validate", two)
	if code != 2 || strings.Count(errOut, two+":") != 3 {
		t.Errorf("validate: exit %d, want 2 with three problems; stderr:\n%s", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := pullguard(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "pullguard ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestDaemonRefusesToStart(t *testing.T) {
	pol := fixedPolicy(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("allow: nginx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		args   []string
		stderr string
	}{
		"nothing to guard": {[]string{"daemon", "--policy", pol, "--log-target", "stderr", "--docker-host", "none", "--containerd-address", "none"},
			"nothing to guard"},
		"invalid policy": {[]string{"daemon", "--policy", bad, "--log-target", "stderr", "--docker-host", "none"},
			bad + ":1:8: allow: expected a list of rules"},
		"missing policy": {[]string{"daemon", "--policy", "/nonexistent/policy.yaml", "--log-target", "stderr"},
			"policy file does not exist"},
		"authz without docker": {[]string{"daemon", "--policy", pol, "--log-target", "stderr", "--docker-host", "none",
			"--containerd-address", "none", "--authz-socket", filepath.Join(t.TempDir(), "p.sock")}, "--authz-socket needs Docker"},
		"bad log target": {[]string{"daemon", "--policy", pol, "--log-target", "syslog"}, "log target"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, _, errOut := pullguard(t, "", tc.args...)
			if code != exitUsage || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, errOut, tc.stderr)
			}
		})
	}
}

// TestCheckHostSpellings: what a user sees for another spelling of an
// allowed registry (the canonical reference) and for a look-alike host
// (the hint naming what it imitates).
func TestCheckHostSpellings(t *testing.T) {
	pol := fixedPolicy(t)
	code, out, errOut := pullguard(t, "", "check", "--policy", pol, at, "-o", "json",
		"registry-1.docker.io/nginx:1.25", "DOCKER.IO:443/library/nginx:1.25", "INDEX.docker.io/myorg/base:2",
		"docker.io:80/library/nginx:1.25", "locahost:5000/approved/busybox:1.0", "Ghcr.io:443/acme/legacy:1")
	if code != 1 {
		t.Errorf("exit status %d, want 1 (stderr: %s)", code, errOut)
	}
	golden(t, "check-hosts", strings.ReplaceAll(out, pol, "POLICY"))
}

// validate names the trusted root identities are checked against, and
// warns when the shipped public-good root is older than the policy allows.
func TestValidateTrustedRoot(t *testing.T) {
	root, err := filepath.Abs("../../packaging/trusted_root.json")
	if err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	doc := "trusted-root: " + root + "\ntrusted-root-max-age: 1d\nallow:\n  - image: registry.k8s.io/**\n    signed-by:\n" +
		"      - issuer: https://accounts.google.com\n        subject: krel-trust@k8s-releng-prod.iam.gserviceaccount.com\n" +
		"      - profile: distroless\n"
	if err := os.WriteFile(pol, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := pullguard(t, "", "policy", "validate", pol)
	if code != 0 || !strings.Contains(out, "\ntrusted root: "+root+" (2 CA, 1 transparency log, 2 CT log, 1 timestamp authority), public-good root taken 2026-05-29\n") {
		t.Errorf("validate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if !strings.Contains(out, "\nprofile distroless: https://accounts.google.com keyless@distroless.iam.gserviceaccount.com\n") {
		t.Errorf("validate does not show what the profile expands to: %q", out)
	}
	if !strings.Contains(errOut, "warning: the trusted root "+root+" was taken 2026-05-29") || !strings.Contains(errOut, "(trusted-root-max-age 1 day)") {
		t.Errorf("no warning about the old root: stderr %q", errOut)
	}
}
