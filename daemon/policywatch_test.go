package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"weak"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/pullguard/pullguard/policy"
)

// policyV is a valid policy whose first allow rule names its version.
func policyV(v string) string {
	return fmt.Sprintf("mode: enforce\ndefault: deny\nallow:\n  - image: localhost:5000/%s/**\n", v)
}

const invalidPolicy = "mode: enforce\nallow:\n  - image: nginx\n    tagz: [1]\n"

// marker names a policy in failure messages: its version and rule count.
func marker(p *policy.Policy) string {
	if len(p.Allow) == 0 {
		return "(no allow rules)"
	}
	v := strings.TrimSuffix(strings.TrimPrefix(p.Allow[0].Pattern, "localhost:5000/"), "/**")
	return fmt.Sprintf("%s+%d", v, len(p.Allow))
}

type watchHarness struct {
	t       *testing.T
	path    string
	w       *PolicyWatcher
	hook    *logtest.Hook
	reloads chan *policy.Policy
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes content beside path and renames it over path, the way
// careful tools (and Ansible, and `install`) do.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startWatcher loads the policy at path and runs a watcher on it until the
// test ends.
func startWatcher(t *testing.T, path string) *watchHarness {
	t.Helper()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.TraceLevel)
	h := &watchHarness{t: t, path: path, hook: hook, reloads: make(chan *policy.Policy, 100)}
	w, err := NewPolicyWatcher(PolicyWatcherConfig{
		Path:     path,
		Log:      log,
		OnReload: func(p *policy.Policy) { h.reloads <- p },
		Debounce: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	watching := make(chan struct{})
	w.watching = func() { close(watching) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	// Run must have its watches in place before the test edits anything.
	select {
	case <-watching:
	case err := <-done:
		t.Fatalf("Run returned before watching: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("watcher did not start watching within 5s")
	}
	return h
}

// expectReload waits for the next reload and checks it is want.
func (h *watchHarness) expectReload(want string) *policy.Policy {
	h.t.Helper()
	select {
	case p := <-h.reloads:
		if got := marker(p); got != want {
			h.t.Fatalf("reloaded policy %s, want %s", got, want)
		}
		if cur := marker(h.w.Current()); cur != want {
			h.t.Fatalf("Current() is %s after reloading %s", cur, want)
		}
		return p
	case <-time.After(5 * time.Second):
		h.t.Fatalf("no reload within 5s; want %s; policy in force: %s; log:\n%s", want, marker(h.w.Current()), h.logText())
	}
	return nil
}

// expectNoError fails if any error entry was logged.
func (h *watchHarness) expectNoError() {
	h.t.Helper()
	for _, e := range h.hook.AllEntries() {
		if e.Level <= logrus.WarnLevel {
			h.t.Errorf("unexpected %s entry: %s", e.Level, e.Message)
		}
	}
}

func (h *watchHarness) logText() string {
	var b strings.Builder
	for _, e := range h.hook.AllEntries() {
		fmt.Fprintf(&b, "  %s %s\n", e.Level, e.Message)
	}
	return b.String()
}

// newPolicyDir writes policy.yaml (v1) in a new directory.
func newPolicyDir(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyV("v1"))
	return path
}

func TestPolicyWatcherEditStyles(t *testing.T) {
	tests := map[string]struct {
		setup func(t *testing.T) string // returns the policy path
		edit  func(t *testing.T, path string)
		want  string
	}{
		"rename over": {
			setup: newPolicyDir,
			edit:  func(t *testing.T, path string) { replaceFile(t, path, policyV("v2")) },
			want:  "v2+1",
		},
		"write in place": {
			setup: newPolicyDir,
			edit:  func(t *testing.T, path string) { writeFile(t, path, policyV("v2")) },
			want:  "v2+1",
		},
		"sed -i": {
			setup: newPolicyDir,
			edit: func(t *testing.T, path string) {
				if out, err := exec.Command("sed", "-i", "s/v1/v2/", path).CombinedOutput(); err != nil {
					t.Fatalf("sed -i: %v: %s", err, out)
				}
			},
			want: "v2+1",
		},
		"delete and recreate": {
			setup: newPolicyDir,
			edit: func(t *testing.T, path string) {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				writeFile(t, path, policyV("v2"))
			},
			want: "v2+1",
		},
		"editor saving with a backup file": {
			// vim with backupcopy=no: rename to policy.yaml~, write anew.
			setup: newPolicyDir,
			edit: func(t *testing.T, path string) {
				if err := os.Rename(path, path+"~"); err != nil {
					t.Fatal(err)
				}
				writeFile(t, path, policyV("v2"))
			},
			want: "v2+1",
		},
		"drop-in added in a new policy.d": {
			setup: newPolicyDir,
			edit: func(t *testing.T, path string) {
				dir := filepath.Join(filepath.Dir(path), "policy.d")
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "10-team.yaml"), "allow:\n  - image: ghcr.io/team/**\n")
			},
			want: "v1+2",
		},
		"drop-in added in an existing policy.d": {
			setup: func(t *testing.T) string {
				path := newPolicyDir(t)
				if err := os.Mkdir(filepath.Join(filepath.Dir(path), "policy.d"), 0o755); err != nil {
					t.Fatal(err)
				}
				return path
			},
			edit: func(t *testing.T, path string) {
				replaceFile(t, filepath.Join(filepath.Dir(path), "policy.d", "10-team.yaml"), "allow:\n  - image: ghcr.io/team/**\n")
			},
			want: "v1+2",
		},
		"ConfigMap ..data symlink swap": {
			setup: func(t *testing.T) string {
				dir := t.TempDir()
				mustMkdir(t, filepath.Join(dir, "..2026_01_01_00_00_00.1"))
				writeFile(t, filepath.Join(dir, "..2026_01_01_00_00_00.1", "policy.yaml"), policyV("v1"))
				mustSymlink(t, "..2026_01_01_00_00_00.1", filepath.Join(dir, "..data"))
				mustSymlink(t, "..data/policy.yaml", filepath.Join(dir, "policy.yaml"))
				return filepath.Join(dir, "policy.yaml")
			},
			edit: func(t *testing.T, path string) {
				configMapSwap(t, filepath.Dir(path), "..2026_01_02_00_00_00.2", policyV("v2"))
			},
			want: "v2+1",
		},
		"symlink to a file elsewhere, target replaced": {
			setup: func(t *testing.T) string {
				real := filepath.Join(t.TempDir(), "real-policy.yaml")
				writeFile(t, real, policyV("v1"))
				path := filepath.Join(t.TempDir(), "policy.yaml")
				mustSymlink(t, real, path)
				return path
			},
			edit: func(t *testing.T, path string) {
				real, err := filepath.EvalSymlinks(path)
				if err != nil {
					t.Fatal(err)
				}
				replaceFile(t, real, policyV("v2"))
			},
			want: "v2+1",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := tc.setup(t)
			h := startWatcher(t, path)
			if got := marker(h.w.Current()); got != "v1+1" {
				t.Fatalf("initial policy %s, want v1+1", got)
			}
			tc.edit(t, path)
			h.expectReload(tc.want)
			h.expectNoError()
		})
	}
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// configMapSwap does what the kubelet's atomic writer does to update a
// ConfigMap volume: a new timestamped directory, a ..data_tmp symlink to
// it renamed over ..data, the old directory removed.
func configMapSwap(t *testing.T, dir, newTS, content string) {
	t.Helper()
	old, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	mustMkdir(t, filepath.Join(dir, newTS))
	writeFile(t, filepath.Join(dir, newTS, "policy.yaml"), content)
	mustSymlink(t, newTS, filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyWatcherConfigMapSwapTwice(t *testing.T) {
	// After a swap the old target directory is gone; the second swap must
	// still be seen, and a swap to identical content must not fire.
	dir := t.TempDir()
	mustMkdir(t, filepath.Join(dir, "..1"))
	writeFile(t, filepath.Join(dir, "..1", "policy.yaml"), policyV("v1"))
	mustSymlink(t, "..1", filepath.Join(dir, "..data"))
	mustSymlink(t, "..data/policy.yaml", filepath.Join(dir, "policy.yaml"))
	h := startWatcher(t, filepath.Join(dir, "policy.yaml"))

	configMapSwap(t, dir, "..2", policyV("v2"))
	h.expectReload("v2+1")
	configMapSwap(t, dir, "..3", policyV("v2")) // unchanged content
	h.waitUnchanged(1)
	h.expectNoReloadYet()
	configMapSwap(t, dir, "..4", policyV("v3"))
	h.expectReload("v3+1") // and not v2 again
	h.expectNoError()
}

func TestPolicyWatcherIgnoresEditorFiles(t *testing.T) {
	path := newPolicyDir(t)
	dropIns := filepath.Join(filepath.Dir(path), "policy.d")
	mustMkdir(t, dropIns)
	h := startWatcher(t, path)

	// Backup and swap files hold anything, invalid YAML included; none
	// is policy, and none makes the watcher reload.
	junk := []string{
		path + "~",
		filepath.Join(filepath.Dir(path), ".policy.yaml.swp"),
		filepath.Join(filepath.Dir(path), "4913"), // vim's write test
		filepath.Join(dropIns, "10-team.yaml~"),
		filepath.Join(dropIns, ".10-team.yaml.swp"),
		filepath.Join(dropIns, "README"),
	}
	for _, f := range junk {
		writeFile(t, f, invalidPolicy)
	}
	replaceFile(t, path, policyV("v2"))
	h.expectReload("v2+1")
	h.expectNoError()
	// Events arrive in order: by the time v2 was loaded, the junk files'
	// events had been seen, and not one of them counted as a change.
	for _, e := range h.hook.AllEntries() {
		for _, f := range junk {
			if strings.Contains(e.Message, f+"\"") || strings.HasSuffix(e.Message, f) {
				t.Errorf("the watcher reacted to %s: %s", f, e.Message)
			}
		}
	}
}

func TestPolicyWatcherInvalidEdit(t *testing.T) {
	path := newPolicyDir(t)
	h := startWatcher(t, path)
	good := h.w.Current()

	replaceFile(t, path, invalidPolicy)
	e := h.waitEntry(func(e *logrus.Entry) bool { return e.Data[FieldMessageID] == MessageIDPolicyInvalid })
	if e.Level != logrus.ErrorLevel {
		t.Errorf("invalid policy logged at %s, want error", e.Level)
	}
	wantLine := path + `:4:5: unknown key "tagz"`
	if !strings.Contains(e.Message, wantLine) {
		t.Errorf("MESSAGE %q lacks the problem %q", e.Message, wantLine)
	}
	if !strings.Contains(e.Message, "keeping the policy in force (hash "+good.Hash+")") {
		t.Errorf("MESSAGE %q does not say the last good policy stays", e.Message)
	}
	if e.Data[FieldPolicyHash] != good.Hash {
		t.Errorf("%s = %v, want the kept policy's %s", FieldPolicyHash, e.Data[FieldPolicyHash], good.Hash)
	}
	if h.w.Current() != good {
		t.Fatalf("policy in force changed to %s after an invalid edit", marker(h.w.Current()))
	}

	// Fixing it is picked up.
	replaceFile(t, path, policyV("v2"))
	p := h.expectReload("v2+1")
	loaded := h.waitEntry(func(e *logrus.Entry) bool {
		return e.Data[FieldMessageID] == MessageIDPolicyLoaded && e.Data[FieldPolicyHash] == p.Hash
	})
	want := logrus.Fields{
		FieldMode:        "enforce",
		FieldAllowRules:  1,
		FieldDenyRules:   0,
		FieldPolicyFiles: path,
		FieldTrigger:     TriggerFileChange,
	}
	for k, v := range want {
		if loaded.Data[k] != v {
			t.Errorf("policy loaded entry: %s = %v, want %v", k, loaded.Data[k], v)
		}
	}
	if loaded.Level != logrus.InfoLevel {
		t.Errorf("policy loaded at %s, want info", loaded.Level)
	}
}

func TestPolicyWatcherRepeatedFailureLoggedOnce(t *testing.T) {
	path := newPolicyDir(t)
	h := startWatcher(t, path)
	replaceFile(t, path, invalidPolicy)
	h.waitEntry(func(e *logrus.Entry) bool { return e.Data[FieldMessageID] == MessageIDPolicyInvalid })
	// The same broken content saved again (an editor autosaving) is not a
	// new error entry; then the fix arrives.
	writeFile(t, path, invalidPolicy)
	h.waitEntry(func(e *logrus.Entry) bool {
		return e.Data[FieldMessageID] == MessageIDPolicyInvalid && e.Level == logrus.DebugLevel
	})
	replaceFile(t, path, policyV("v2"))
	h.expectReload("v2+1")
	errs := 0
	for _, e := range h.hook.AllEntries() {
		if e.Data[FieldMessageID] == MessageIDPolicyInvalid && e.Level == logrus.ErrorLevel {
			errs++
		}
	}
	if errs != 1 {
		t.Errorf("%d error entries for one broken edit, want 1:\n%s", errs, h.logText())
	}
}

func TestPolicyWatcherUnchangedContent(t *testing.T) {
	path := newPolicyDir(t)
	h := startWatcher(t, path)
	// touch, and a rewrite with the same bytes: each is re-read, found
	// unchanged, and fires no reload.
	now := time.Now().Add(time.Hour)
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	h.waitUnchanged(1)
	replaceFile(t, path, policyV("v1"))
	h.waitUnchanged(2)
	h.expectNoReloadYet()
	replaceFile(t, path, policyV("v2"))
	h.expectReload("v2+1")
}

// waitUnchanged waits until the watcher has found the policy unchanged n
// times in all.
func (h *watchHarness) waitUnchanged(n int) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		count := 0
		for _, e := range h.hook.AllEntries() {
			if strings.HasPrefix(e.Message, "policy unchanged") {
				count++
			}
		}
		if count >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("the policy was not found unchanged %d times within 5s; log:\n%s", n, h.logText())
}

func (h *watchHarness) waitEntry(match func(*logrus.Entry) bool) *logrus.Entry {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range h.hook.AllEntries() {
			if match(e) {
				return e
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("no matching log entry within 5s; log:\n%s", h.logText())
	return nil
}

func TestPolicyWatcherReload(t *testing.T) {
	path := newPolicyDir(t)
	log, hook := logtest.NewNullLogger()
	var reloads []string
	w, err := NewPolicyWatcher(PolicyWatcherConfig{Path: path, Log: log, OnReload: func(p *policy.Policy) { reloads = append(reloads, marker(p)) }})
	if err != nil {
		t.Fatal(err)
	}
	good := w.Current()

	t.Run("invalid keeps the policy and returns the problems", func(t *testing.T) {
		writeFile(t, path, invalidPolicy)
		err := w.Reload()
		if !errors.Is(err, policy.ErrInvalid) {
			t.Fatalf("Reload() = %v, want an error wrapping policy.ErrInvalid", err)
		}
		if !strings.Contains(err.Error(), path+":4:5:") {
			t.Errorf("error %q lacks file:line:col", err)
		}
		if w.Current() != good || len(reloads) != 0 {
			t.Errorf("policy changed (%s) or OnReload called (%v)", marker(w.Current()), reloads)
		}
		if e := hook.LastEntry(); e.Level != logrus.ErrorLevel || e.Data[FieldMessageID] != MessageIDPolicyInvalid || e.Data[FieldTrigger] != TriggerSignal {
			t.Errorf("last entry %s %v %q", e.Level, e.Data, e.Message)
		}
	})
	t.Run("valid is in force when Reload returns", func(t *testing.T) {
		writeFile(t, path, policyV("v2"))
		if err := w.Reload(); err != nil {
			t.Fatal(err)
		}
		if got := marker(w.Current()); got != "v2+1" || len(reloads) != 1 || reloads[0] != "v2+1" {
			t.Errorf("Current() %s, OnReload calls %v; want v2+1 once", got, reloads)
		}
	})
	t.Run("unchanged: no OnReload, but an answer", func(t *testing.T) {
		if err := w.Reload(); err != nil {
			t.Fatal(err)
		}
		if len(reloads) != 1 {
			t.Errorf("OnReload calls %v, want still 1", reloads)
		}
		if e := hook.LastEntry(); e.Level != logrus.InfoLevel || !strings.Contains(e.Message, "policy unchanged") {
			t.Errorf("last entry %s %q, want an info entry saying the policy is unchanged", e.Level, e.Message)
		}
	})
	t.Run("the same failure twice is logged twice when asked for", func(t *testing.T) {
		writeFile(t, path, invalidPolicy)
		before := len(hook.AllEntries())
		_ = w.Reload()
		_ = w.Reload()
		n := 0
		for _, e := range hook.AllEntries()[before:] {
			if e.Level == logrus.ErrorLevel {
				n++
			}
		}
		if n != 2 {
			t.Errorf("%d error entries for two reload requests, want 2", n)
		}
	})
}

// TestPolicyWatcherLetsGoOfThePreviousPolicy: the policy a reload replaced
// is offered to the guards while the new one settles, and not after: a
// large policy kept for nothing doubles the daemon's memory. A change to
// the files while settling makes the hold last longer.
func TestPolicyWatcherLetsGoOfThePreviousPolicy(t *testing.T) {
	path := newPolicyDir(t)
	const settle = 300 * time.Millisecond
	log, _ := logtest.NewNullLogger()
	w, err := NewPolicyWatcher(PolicyWatcherConfig{Path: path, Log: log, Settle: settle})
	if err != nil {
		t.Fatal(err)
	}
	first := weak.Make(w.Current())
	writeFile(t, path, policyV("v2"))
	start := time.Now()
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	if prev, until := w.Settling(); prev != first.Value() || until.Before(start.Add(settle)) {
		t.Fatalf("Settling() = %p, %v right after the reload; want the first policy (%p) until %v or later", prev, until, first.Value(), start.Add(settle))
	}
	time.Sleep(settle / 2)
	w.markChanged() // an edit the watcher has seen, not yet reloaded
	extended := time.Now().Add(settle)
	waitFor := func(what string, done func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !done(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("still %s after 10 s", what)
			}
		}
	}
	waitFor("holding the previous policy", func() bool { p, _ := w.Settling(); return p == nil })
	if now := time.Now(); now.Before(extended) {
		t.Errorf("the previous policy was let go at %v, before the settle period the edit began ended (%v)", now, extended)
	}
	waitFor("referencing the previous policy", func() bool { runtime.GC(); return first.Value() == nil })

	t.Run("no hold without a settle period", func(t *testing.T) {
		w, err := NewPolicyWatcher(PolicyWatcherConfig{Path: path, Log: log, Settle: -1})
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, policyV("v3"))
		if err := w.Reload(); err != nil {
			t.Fatal(err)
		}
		if p := w.prev.Load(); p != nil {
			t.Errorf("the previous policy is held (%s) with no settle period", marker(p))
		}
	})
}

func TestNewPolicyWatcherRefusesBadPolicy(t *testing.T) {
	tests := map[string]struct {
		setup    func(t *testing.T) string
		insecure bool
		want     string // in the error; empty: no error
	}{
		"invalid": {
			setup: func(t *testing.T) string {
				path := filepath.Join(t.TempDir(), "policy.yaml")
				writeFile(t, path, invalidPolicy)
				return path
			},
			want: `:4:5: unknown key "tagz"`,
		},
		"missing": {
			setup: func(t *testing.T) string { return filepath.Join(t.TempDir(), "policy.yaml") },
			want:  "policy file does not exist",
		},
		"writable by others": {
			setup: func(t *testing.T) string {
				path := newPolicyDir(t)
				if err := os.Chmod(path, 0o666); err != nil {
					t.Fatal(err)
				}
				return path
			},
			want: "writable by group or others",
		},
		"writable by others, insecure permissions allowed": {
			setup: func(t *testing.T) string {
				path := newPolicyDir(t)
				if err := os.Chmod(path, 0o666); err != nil {
					t.Fatal(err)
				}
				return path
			},
			insecure: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			log, _ := logtest.NewNullLogger()
			w, err := NewPolicyWatcher(PolicyWatcherConfig{Path: tc.setup(t), Log: log, LoadOptions: policy.LoadOptions{InsecurePermissions: tc.insecure}})
			if tc.want == "" {
				if err != nil || w.Current() == nil {
					t.Fatalf("NewPolicyWatcher: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("NewPolicyWatcher accepted a bad policy")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

func TestWatchSetRelevant(t *testing.T) {
	ws := &watchSet{roles: map[string]watchRole{
		"/etc/pullguard":          {mainBase: "policy.yaml"},
		"/etc/pullguard/policy.d": {dropIns: true},
		"/srv/real":               {targets: map[string]bool{"real.yaml": true, "team.yaml": true}},
	}}
	tests := map[string]bool{
		"/etc/pullguard/policy.yaml":           true,
		"/etc/pullguard/policy.d":              true,
		"/etc/pullguard/..data":                true,
		"/etc/pullguard/..2026_01_01.123":      true,
		"/etc/pullguard/policy.yaml~":          false,
		"/etc/pullguard/.policy.yaml.swp":      false,
		"/etc/pullguard/4913":                  false,
		"/etc/pullguard/other.yaml":            false,
		"/etc/pullguard/policy.d/10-a.yaml":    true,
		"/etc/pullguard/policy.d/10-a.yaml~":   false,
		"/etc/pullguard/policy.d/.10-a.swp":    false,
		"/etc/pullguard/policy.d/.hidden.yaml": false,
		"/etc/pullguard/policy.d/..data":       true,
		"/etc/pullguard/policy.d/notes.txt":    false,
		"/srv/real/real.yaml":                  true,
		"/srv/real/team.yaml":                  true,
		"/srv/real/other.yaml":                 false,
		"/srv/real":                            true, // the watched directory itself went away
		"/elsewhere/policy.yaml":               false,
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			if got := ws.relevant(name); got != want {
				t.Errorf("relevant(%q) = %v, want %v", name, got, want)
			}
		})
	}
}

func TestPolicyWatcherNewDropInDirIsWatched(t *testing.T) {
	path := newPolicyDir(t)
	h := startWatcher(t, path)
	dir := filepath.Join(filepath.Dir(path), "policy.d")
	mustMkdir(t, dir)
	h.expectNoReloadYet()
	writeFile(t, filepath.Join(dir, "10-team.yaml"), "allow:\n  - image: ghcr.io/team/**\n")
	h.expectReload("v1+2")
	// A change inside policy.d, which did not exist when Run started.
	writeFile(t, filepath.Join(dir, "20-more.yaml"), "allow:\n  - image: ghcr.io/more/**\n")
	h.expectReload("v1+3")
	// Removing the whole directory drops its rules.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	h.expectReload("v1+1")
	h.expectNoError()
}

// expectNoReloadYet fails if a reload is already waiting.
func (h *watchHarness) expectNoReloadYet() {
	h.t.Helper()
	select {
	case p := <-h.reloads:
		h.t.Fatalf("unexpected reload of %s", marker(p))
	default:
	}
}

// placeLink makes a link to target owned by uid and renames it to link in
// one step, as a user who owns the link would leave it: the watcher sees
// the finished link, never a root-owned one on its way to being given away.
func placeLink(t *testing.T, target, link string, uid int) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(link), ".tmp-link")
	mustSymlink(t, target, tmp)
	if err := os.Lchown(tmp, uid, uid); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// openDir is a directory anyone may write, holding a link, another user's
// when the test runs as root, to a root-owned drop-in that allows every
// image in a safe directory (as `docker exec` leaves one in a container's
// upper directory): the file and the directories above it all pass.
func openDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	allowAll := filepath.Join(base, "upper", "all.yaml")
	mustMkdir(t, filepath.Dir(allowAll))
	writeFile(t, allowAll, "allow:\n  - image: \"**\"\n")
	dir := filepath.Join(base, "open")
	mustMkdir(t, dir)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	uid := os.Geteuid()
	if uid == 0 {
		uid = 65534
	}
	placeLink(t, allowAll, filepath.Join(dir, "99-all.yaml"), uid)
	return dir
}

// TestPolicyWatcherRefusesLinkedPolicy (issue 22): a link added to the
// running daemon's policy that leads somewhere others can write, or that
// another user owns, is refused on reload with an error entry naming the
// path and the fix, and the policy in force stays.
func TestPolicyWatcherRefusesLinkedPolicy(t *testing.T) {
	tests := map[string]struct {
		needRoot bool
		// change alters the policy at path; it returns what the
		// refusal must say.
		change func(t *testing.T, path string) string
	}{
		"policy.d linked to a world-writable directory": {change: func(t *testing.T, path string) string {
			open := openDir(t)
			link := filepath.Join(filepath.Dir(path), "policy.d")
			placeLink(t, open, link, os.Geteuid())
			return open + ": policy directory is writable by group or others (mode 0777), so they decide which policy files it holds: " +
				"run chmod go-w on it, reached through the link " + link
		}},
		"a drop-in linked into a world-writable directory": {change: func(t *testing.T, path string) string {
			open := openDir(t)
			dropIns := filepath.Join(filepath.Dir(path), "policy.d")
			mustMkdir(t, dropIns)
			link := filepath.Join(dropIns, "99-all.yaml")
			placeLink(t, filepath.Join(open, "99-all.yaml"), link, os.Geteuid())
			return open + ": policy directory is writable by group or others (mode 0777), so they decide which policy files it holds: " +
				"run chmod go-w on it, reached through the link " + link
		}},
		"policy.d a link another user owns": {needRoot: true, change: func(t *testing.T, path string) string {
			safe := filepath.Join(t.TempDir(), "d")
			mustMkdir(t, safe)
			writeFile(t, filepath.Join(safe, "99-all.yaml"), "allow:\n  - image: \"**\"\n")
			link := filepath.Join(filepath.Dir(path), "policy.d")
			placeLink(t, safe, link, 65534)
			return link + ": symbolic link is owned by uid 65534, neither root nor the running user (uid 0), who can point it anywhere: " +
				"remove it, or recreate it as root with ln -sfn TARGET LINK"
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.needRoot && os.Geteuid() != 0 {
				t.Skip("needs root to give a link to another user")
			}
			path := newPolicyDir(t)
			h := startWatcher(t, path)
			good := h.w.Current()
			want := tc.change(t, path)
			e := h.waitEntry(func(e *logrus.Entry) bool { return e.Data[FieldMessageID] == MessageIDPolicyInvalid })
			if e.Level != logrus.ErrorLevel {
				t.Errorf("refusal logged at %s, want error", e.Level)
			}
			if !strings.Contains(e.Message, want) {
				t.Errorf("MESSAGE %q lacks %q", e.Message, want)
			}
			if !strings.Contains(e.Message, "keeping the policy in force (hash "+good.Hash+")") {
				t.Errorf("MESSAGE %q does not say the last good policy stays", e.Message)
			}
			if h.w.Current() != good {
				t.Fatalf("policy in force changed to %s after the link", marker(h.w.Current()))
			}
			h.expectNoReloadYet()
		})
	}
}

// TestPolicyWatcherLinkedDropInEdited: a drop-in that links to a file
// elsewhere is reloaded when that file is edited where it is.
func TestPolicyWatcherLinkedDropInEdited(t *testing.T) {
	path := newPolicyDir(t)
	teams := t.TempDir()
	team := filepath.Join(teams, "team.yaml")
	writeFile(t, team, "allow:\n  - image: ghcr.io/team/**\n")
	mustMkdir(t, filepath.Join(filepath.Dir(path), "policy.d"))
	mustSymlink(t, team, filepath.Join(filepath.Dir(path), "policy.d", "10-team.yaml"))
	h := startWatcher(t, path)
	if got := marker(h.w.Current()); got != "v1+2" {
		t.Fatalf("policy at start: %s, want v1+2", got)
	}
	replaceFile(t, team, "allow:\n  - image: ghcr.io/team/**\n  - image: ghcr.io/more/**\n")
	h.expectReload("v1+3")
	h.expectNoError()
}
