package integration

// End-to-end tests of verdicts kept across a restart (issue 29): under local-images: deny a
// host asks the registry where each containerd image's content came from; a restart under the
// same policy asks nothing about the images it judged before, and a kept file that cannot be
// trusted is discarded, said so, and the images asked about again.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// keptVerdictImages is how many images the host holds.
const keptVerdictImages = 50

func TestVerdictsSurviveRestart(t *testing.T) {
	e := RequireEnv(t)
	reg := startLoggedRegistry(t)
	imgs := pushImages(t, reg, "approved/app", keptVerdictImages)
	ns := UniqueName(t)
	holdImages(t, e, ns, imgs)
	policy := WritePolicy(t, "", localDenyPolicy(reg))
	state := filepath.Join(t.TempDir(), "state")
	verdicts := filepath.Join(state, "verdicts")
	start := func() *Pullguard {
		t.Helper()
		return startContainerdGuard(t, e, policy, "--containerd-namespaces", ns, "--state-dir", state, "--resync-interval", "2s")
	}
	// manifestLookups are the registry's answers about the held images' content since offset.
	manifestLookups := func(offset int64) (int, int64) {
		reqs, size := registryRequests(t, reg, offset)
		n := 0
		for _, r := range reqs {
			if strings.HasPrefix(r, "HEAD /v2/approved/app-") && strings.Contains(r, "/manifests/sha256:") {
				n++
			}
		}
		return n, size
	}
	// asksAboutAll waits until the registry was asked about every held image since offset.
	asksAboutAll := func(offset int64) {
		t.Helper()
		Eventually(t, actDeadline, func() (bool, string) {
			n, _ := manifestLookups(offset)
			return n >= keptVerdictImages, fmt.Sprintf("the registry was asked about %d images, want all %d", n, keptVerdictImages)
		})
	}
	requireKept := func() {
		t.Helper()
		requireCtrImages(t, e, ns, names(imgs)...)
	}

	// The first start asks about every image, and keeps the verdicts.
	_, offset := manifestLookups(0)
	first := start()
	asksAboutAll(offset)
	Eventually(t, actDeadline, func() (bool, string) {
		st, err := os.Stat(verdicts)
		return err == nil && st.Mode().Perm() == 0o600, fmt.Sprintf("no verdict file of mode 0600: %v", err)
	})
	if err := first.Stop(t); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	requireKept()

	// A restart under the same policy asks nothing about them, through its first reconcile and
	// two resyncs.
	_, offset = manifestLookups(0)
	second := start()
	time.Sleep(5 * time.Second)
	if n, _ := manifestLookups(offset); n != 0 {
		reqs, _ := registryRequests(t, reg, offset)
		t.Errorf("after a restart the registry was asked %d times about images judged before the restart, want 0; requests: %q", n, reqs)
	}
	second.WaitEntry(t, actDeadline, "MESSAGE_ID="+msgStarted)
	if kept := second.Entries(t, "PRIORITY=6"); !anyMessage(kept, "kept verdicts: 50 read from "+verdicts) {
		t.Errorf("the restarted daemon does not say it read the kept verdicts; its output:\n%s", second.Output())
	}
	if err := second.Stop(t); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	requireKept()

	// A damaged file, and one another user owns, are discarded and logged; the images are asked
	// about again (and a new file written).
	for name, spoil := range map[string]func(){
		"damaged": func() {
			data, err := os.ReadFile(verdicts)
			if err != nil {
				t.Fatal(err)
			}
			i := strings.Index(string(data), "approved/app-")
			data[i+len("approved/")] = 'X'
			if err := os.WriteFile(verdicts, data, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"owned by another user": func() {
			if err := os.Chown(verdicts, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			spoil()
			_, offset := manifestLookups(0)
			d := start()
			d.WaitEntry(t, actDeadline, "PRIORITY=4")
			if w := d.Entries(t, "PRIORITY=4"); !anyMessage(w, "kept verdicts discarded, not trusted") {
				t.Errorf("no warning that the kept verdicts were discarded; warnings: %v", messages(w))
			}
			asksAboutAll(offset)
			Eventually(t, actDeadline, func() (bool, string) {
				st, err := os.Stat(verdicts)
				return err == nil && ownedByMe(st), fmt.Sprintf("no new verdict file: %v", err)
			})
			if err := d.Stop(t); err != nil {
				t.Fatalf("stopping: %v", err)
			}
			requireKept()
		})
	}
}

func names(imgs []heldImage) []string {
	out := make([]string, len(imgs))
	for i, img := range imgs {
		out[i] = img.name
	}
	return out
}

func anyMessage(entries []map[string]string, substr string) bool {
	for _, e := range entries {
		if strings.Contains(e["MESSAGE"], substr) {
			return true
		}
	}
	return false
}

func messages(entries []map[string]string) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e["MESSAGE"]
	}
	return out
}

func ownedByMe(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(sys.Uid) == os.Geteuid()
}
