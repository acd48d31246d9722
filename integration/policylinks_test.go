package integration

// End-to-end test of links in the policy's path (issue 22): a user who is not root links an
// allow-all file into a running daemon's policy, and the daemon refuses it on reload, says
// so in the journal and keeps the last good policy.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nobody is the user the attacker is: not root, not the daemon's.
const nobody = 65534

// TestPolicyLinkFromAnotherUserRefused: the directory holding the policy is made sticky and
// world-writable, as /tmp is (which was accepted before); the daemon refuses that at once. A
// user who is not root then creates the missing policy.d there, a link to a directory
// holding a root-owned file that allows every image; the reload refuses it too and the
// plugin still refuses what the policy denies. Once the directory is safe again, the
// refusal names the link and its owner.
func TestPolicyLinkFromAnotherUserRefused(t *testing.T) {
	e := RequireEnv(t)
	base, err := os.MkdirTemp("/tmp", "pglinks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	etc, upper := filepath.Join(base, "etc"), filepath.Join(base, "upper")
	for _, d := range []string{base, etc, upper} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil { // nobody must reach etc
			t.Fatal(err)
		}
	}
	// What the user links in: root's file, in root's directory, as `docker exec` leaves one
	// in a container's upper directory.
	if err := os.WriteFile(filepath.Join(upper, "all.yaml"), []byte("allow:\n  - image: \"**\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := WritePolicy(t, etc, policyWithRunning(e, "enforce", "keep"))
	hash := policyHash(t, path)
	socket := filepath.Join(socketDir(t, "pglinks-"), "authz.sock")
	d := startPluginDaemon(t, e, path, socket, nil)
	evil := e.Ref("evil/miner:latest")

	requireKept := func(t *testing.T, entry map[string]string, wants ...string) {
		t.Helper()
		for _, want := range wants {
			if !strings.Contains(entry["MESSAGE"], want) {
				t.Errorf("the refusal does not say %q:\n%s", want, entry["MESSAGE"])
			}
		}
		if entry["PRIORITY"] != "3" {
			t.Errorf("the refusal has PRIORITY=%q, want 3 (error)", entry["PRIORITY"])
		}
		if entry["PULLGUARD_POLICY_HASH"] != hash {
			t.Errorf("the refusal: PULLGUARD_POLICY_HASH=%q, want the kept policy's %s", entry["PULLGUARD_POLICY_HASH"], hash)
		}
		if allow, msg := askPluginPull(t, e, socket, evil); allow {
			t.Errorf("the plugin allows a pull of %s after the refusal: %s", evil, msg)
		}
	}
	sticky := etc + ": policy directory is writable by group or others (mode 1777); the sticky bit stops them removing files here, " +
		"not creating a missing policy.d, drop-in or link"

	t.Log("the policy's directory becomes sticky and world-writable")
	if err := os.Chmod(etc, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	requireKept(t, d.WaitEntry(t, actDeadline, "MESSAGE_ID="+msgPolicyInvalid), sticky)

	t.Log("a user who is not root links policy.d to a directory with an allow-all file")
	link := filepath.Join(etc, "policy.d")
	if out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "ln", "-s", upper, link).CombinedOutput(); err != nil {
		t.Fatalf("ln -s as nobody: %v\n%s", err, out)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Sys().(*syscall.Stat_t).Uid != nobody {
		t.Fatalf("the link is not nobody's: %v", err)
	}
	// The same refusal as before, for the file change (logged once); asked again, it is
	// logged again.
	d.Signal(t, syscall.SIGHUP)
	requireKept(t, d.WaitEntry(t, actDeadline, "MESSAGE_ID="+msgPolicyInvalid, "PULLGUARD_TRIGGER=reload request"), sticky)

	t.Log("the directory is made safe again; the link is still there")
	if err := os.Chmod(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	owned := link + ": symbolic link is owned by uid 65534, neither root nor the running user (uid 0), who can point it anywhere: " +
		"remove it, or recreate it as root with ln -sfn TARGET LINK (--insecure-policy-permissions overrides, for development only)"
	var refusal map[string]string
	Eventually(t, actDeadline, func() (bool, string) {
		for _, entry := range d.Entries(t, "MESSAGE_ID="+msgPolicyInvalid, "PULLGUARD_TRIGGER=file change") {
			if strings.Contains(entry["MESSAGE"], owned) {
				refusal = entry
				return true, ""
			}
		}
		return false, "no refusal names the link " + link + " and its owner"
	})
	requireKept(t, refusal, "policy "+path+" is invalid; keeping the policy in force (hash "+hash+"):\n"+owned)

	if loaded := d.Entries(t, "MESSAGE_ID="+msgPolicyLoaded); len(loaded) != 1 || loaded[0]["PULLGUARD_POLICY_HASH"] != hash {
		t.Errorf("policy loaded entries: %v, want only the first, hash %s", loaded, hash)
	}
}
