package integration

// End-to-end tests of the daemon's policy hot reload on both Docker engines (issue 4): the
// ways operators and tools replace a policy file, and an invalid policy.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReloadAppliesEditedPolicy: a policy replaced by rename, edited in place by sed -i, or
// swapped ConfigMap-style (a ..data symlink moved to a new timestamped directory) is loaded
// (a `policy loaded` entry with the new content's hash, triggered by the file change) and
// applied at once: an image the old policy allowed and the new one does not is removed by
// the reload's reconcile.
func TestReloadAppliesEditedPolicy(t *testing.T) {
	layouts := []struct {
		name string
		// setup writes the first policy and returns the path to give the daemon, a
		// function that replaces the policy the layout's way (yaml is the new content,
		// for layouts that write a whole file), and one that tidies up after the reload
		// was seen (nil: nothing to do).
		setup func(t *testing.T, first string) (path string, edit func(yaml string), after func())
	}{
		{"rename", func(t *testing.T, first string) (string, func(string), func()) {
			dir := t.TempDir()
			path := WritePolicy(t, dir, first)
			return path, func(yaml string) { WritePolicy(t, dir, yaml) }, nil
		}},
		{"sed -i", func(t *testing.T, first string) (string, func(string), func()) {
			path := WritePolicy(t, "", first)
			return path, func(string) {
				// Deletes the myorg/base allow rule in place (sed writes a temporary file
				// and renames it over the policy).
				if out, err := exec.Command("sed", "-i", `/myorg\/base/d`, path).CombinedOutput(); err != nil {
					t.Fatalf("sed -i: %v\n%s", err, out)
				}
			}, nil
		}},
		{"configmap symlink swap", func(t *testing.T, first string) (string, func(string), func()) {
			// The layout kubelet's atomic writer makes of a mounted ConfigMap:
			// policy.yaml -> ..data/policy.yaml, ..data -> ..<timestamp>/.
			dir := t.TempDir()
			writeVersion := func(stamp, yaml string) string {
				name := "..2026_01_01_00_00_0" + stamp
				if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, name, "policy.yaml"), []byte(yaml), 0o644); err != nil {
					t.Fatal(err)
				}
				return name
			}
			old := writeVersion("0.000000001", first)
			for link, target := range map[string]string{"..data": old, "policy.yaml": "..data/policy.yaml"} {
				if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
					t.Fatal(err)
				}
			}
			return filepath.Join(dir, "policy.yaml"), func(yaml string) {
					next := writeVersion("1.000000002", yaml)
					// ln -sfn to a temporary name, then rename it over ..data: one atomic switch.
					tmp := filepath.Join(dir, "..data_tmp")
					if out, err := exec.Command("ln", "-sfn", next, tmp).CombinedOutput(); err != nil {
						t.Fatalf("ln -sfn: %v\n%s", err, out)
					}
					if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
						t.Fatal(err)
					}
				}, func() {
					// kubelet then removes the old version. Only after the reload was seen:
					// the removal alone would also trigger a reload, and the test is that the
					// swap does.
					if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
						t.Fatal(err)
					}
				}
		}},
	}
	for _, layout := range layouts {
		t.Run(layout.name, func(t *testing.T) {
			ForEachDocker(t, func(t *testing.T, e *Env) {
				approved, myorg, evil := e.Ref("approved/busybox:1.0"), e.Ref("myorg/base:1.0"), e.Ref("evil/miner:latest")
				first := policyYAML(e, "enforce", true)
				second := policyYAML(e, "enforce", false) // myorg/base no longer allowed
				path, edit, after := layout.setup(t, first)
				firstHash := policyHash(t, path)
				g := startDockerGuard(t, e, path)

				e.Docker(t, "pull", "-q", approved)
				e.Docker(t, "pull", "-q", myorg)
				// A disallowed pull, removed, shows the guard at work; myorg/base must be left.
				e.Docker(t, "pull", "-q", evil)
				waitImageGone(t, e, evil)
				requireImage(t, e, myorg, "")

				edit(second)
				newHash := policyHash(t, path)
				if newHash == firstHash {
					t.Fatalf("the edit did not change the policy (hash %s)", newHash)
				}
				loaded := g.WaitEntry(t, actDeadline, "MESSAGE_ID="+msgPolicyLoaded, "PULLGUARD_POLICY_HASH="+newHash)
				if loaded["PULLGUARD_TRIGGER"] != "file change" {
					t.Errorf("policy loaded with PULLGUARD_TRIGGER=%q, want file change", loaded["PULLGUARD_TRIGGER"])
				}
				if after != nil {
					after()
				}
				waitImageGone(t, e, myorg)
				entry := g.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+myorg)
				if entry["PULLGUARD_EVENT"] != "reconcile" || entry["PULLGUARD_POLICY_HASH"] != newHash {
					t.Errorf("removal of %s: PULLGUARD_EVENT=%q PULLGUARD_POLICY_HASH=%q, want reconcile and %s",
						myorg, entry["PULLGUARD_EVENT"], entry["PULLGUARD_POLICY_HASH"], newHash)
				}
				requireImage(t, e, approved, "")
			})
		})
	}
}

// TestReloadInvalidPolicyKeepsLastGood: a broken policy is rejected with an error entry
// (PRIORITY=3) naming file:line, and the last good policy stays in force: what it allows
// stays, what it denies is still removed. A fixed policy is then picked up.
func TestReloadInvalidPolicyKeepsLastGood(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		approved, myorg, evil := e.Ref("approved/busybox:1.0"), e.Ref("myorg/base:1.0"), e.Ref("evil/miner:latest")
		dir := t.TempDir()
		good := policyYAML(e, "enforce", true)
		path := WritePolicy(t, dir, good)
		goodHash := policyHash(t, path)
		g := startDockerGuard(t, e, path)

		// Broken: an unknown key. It also drops myorg/base, so that a daemon that applied any
		// part of it would remove myorg/base.
		bad := policyYAML(e, "enforce", false) + fmt.Sprintf("  - image: %s/other/**\n    tagz: [x]\n", e.Registry)
		WritePolicy(t, dir, bad)
		entry := g.WaitEntry(t, actDeadline, "MESSAGE_ID="+msgPolicyInvalid)
		if entry["PRIORITY"] != "3" {
			t.Errorf("invalid policy entry has PRIORITY=%q, want 3 (error)", entry["PRIORITY"])
		}
		if want := fmt.Sprintf("%s:%d", path, lineOf(t, bad, "tagz")); !strings.Contains(entry["MESSAGE"], want) {
			t.Errorf("invalid policy entry does not name %s:\n%s", want, entry["MESSAGE"])
		}
		if entry["PULLGUARD_POLICY_HASH"] != goodHash {
			t.Errorf("invalid policy entry: PULLGUARD_POLICY_HASH=%q, want the kept policy's %s", entry["PULLGUARD_POLICY_HASH"], goodHash)
		}

		e.Docker(t, "pull", "-q", approved)
		e.Docker(t, "pull", "-q", myorg)
		e.Docker(t, "pull", "-q", evil)
		waitImageGone(t, e, evil)
		requireImage(t, e, approved, "")
		requireImage(t, e, myorg, "")
		if loaded := g.Entries(t, "MESSAGE_ID="+msgPolicyLoaded); len(loaded) != 1 || loaded[0]["PULLGUARD_POLICY_HASH"] != goodHash {
			t.Errorf("policy loaded entries after the invalid edit: %v, want only the first, hash %s", loaded, goodHash)
		}

		// Fixed: the new policy is in force, and applied.
		WritePolicy(t, dir, policyYAML(e, "enforce", false))
		g.WaitEntry(t, actDeadline, "MESSAGE_ID="+msgPolicyLoaded, "PULLGUARD_POLICY_HASH="+policyHash(t, path))
		waitImageGone(t, e, myorg)
		requireImage(t, e, approved, "")
	})
}
