package policy

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files with the current output")

// TestLoadErrorsGolden pins the error messages an operator sees for each
// kind of broken policy: file:line:column and what was expected.
func TestLoadErrorsGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			_, err := LoadFiles([]string{f}, LoadOptions{InsecurePermissions: true})
			if err == nil {
				t.Fatal("loaded an invalid policy")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file (run go test ./policy -update): %v", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestLoadDropIns(t *testing.T) {
	p, err := Load("testdata/dropins/policy.yaml", LoadOptions{InsecurePermissions: true})
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"testdata/dropins/policy.yaml", "testdata/dropins/policy.d/10-team-a.yaml", "testdata/dropins/policy.d/20-team-b.yaml"}
	if strings.Join(p.Files, " ") != strings.Join(wantFiles, " ") {
		t.Errorf("files read = %v, want %v (hidden and backup files skipped, lexical order)", p.Files, wantFiles)
	}
	for ref, want := range map[string]bool{
		"registry.corp.example.com/base/x:1": true,
		"ghcr.io/team-a/app:1":               true,
		"ghcr.io/team-a/secret:1":            false, // a drop-in's deny wins
		"quay.io/team-b/app:1":               true,
		"evil.io/x:1":                        false, // only in a hidden file and a backup file
	} {
		if d := p.Decide(ref, testNow); d.Allowed != want {
			t.Errorf("%s: allowed = %v, want %v (%s)", ref, d.Allowed, want, d.Reason)
		}
	}
	if p.Mode != ModeEnforce || p.Default != DefaultDeny {
		t.Errorf("mode/default = %s/%s, want enforce/deny", p.Mode, p.Default)
	}
}

func TestLoadSettingTwiceAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "policy.yaml"), "default: deny\n")
	write(t, filepath.Join(dir, "policy.d", "50-team.yaml"), "allow:\n  - image: a/b\ndefault: allow\n")
	_, err := Load(filepath.Join(dir, "policy.yaml"), LoadOptions{})
	want := filepath.Join(dir, "policy.d", "50-team.yaml") + ":3:1: default is set twice: first at " + filepath.Join(dir, "policy.yaml") + ":1:1; set it in one file only"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant %s", err, want)
	}
}

func TestLoadDefaults(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "policy.yaml")
	write(t, f, "# nothing yet\n")
	p, err := Load(f, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != ModeAudit || p.Default != DefaultDeny || p.Running != RunningKeep {
		t.Errorf("defaults = %s/%s/%s, want audit/deny/keep", p.Mode, p.Default, p.Running)
	}
	if d := p.Decide("nginx:1.25", testNow); d.Allowed {
		t.Errorf("an empty policy allowed %s", d.Reference)
	}
}

func TestLoadRefusesUnsafeFiles(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "absent.yaml")
	writable := filepath.Join(dir, "writable.yaml")
	write(t, writable, "mode: enforce\n")
	if err := os.Chmod(writable, 0o666); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		file, want string
		opts       LoadOptions
	}{
		"missing file":     {missing, missing + ": policy file does not exist", LoadOptions{}},
		"missing insecure": {missing, missing + ": policy file does not exist", LoadOptions{InsecurePermissions: true}},
		"world writable":   {writable, writable + ": policy file is writable by group or others (mode 0666): run chmod go-w on it (--insecure-policy-permissions overrides, for development only)", LoadOptions{}},
		"a directory":      {sub, sub + ": policy file is not a regular file", LoadOptions{}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := LoadFiles([]string{tc.file}, tc.opts)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error = %v\nwant %s", err, tc.want)
			}
		})
	}
	if _, err := LoadFiles([]string{writable}, LoadOptions{InsecurePermissions: true}); err != nil {
		t.Errorf("--insecure-policy-permissions did not override: %v", err)
	}
}

func TestLoadRefusesForeignOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	f := filepath.Join(t.TempDir(), "policy.yaml")
	write(t, f, "mode: enforce\n")
	if err := os.Chown(f, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFiles([]string{f}, LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "owned by uid 65534, neither root nor the running user") {
		t.Fatalf("error = %v, want a refusal naming the owner", err)
	}
}

func write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
