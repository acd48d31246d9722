package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestScanContainerd: `pullguard scan` covers containerd with the daemon's own planning: it lists
// the disallowed record of a namespace (and not the allowed one), changes nothing, and with
// --enforce deletes exactly what it listed.
func TestScanContainerd(t *testing.T) {
	e := RequireEnv(t)
	ns := "pgscan-" + strings.ToLower(UniqueName(t))
	evil, approved := e.Ref("evil/miner:1.0"), e.Ref("approved/busybox:1.0")
	ctrPull(t, e, ns, evil)
	ctrPull(t, e, ns, approved)
	path := WritePolicy(t, "", policyYAML(e, "enforce", false))
	scan := []string{"scan", "--policy", path, "--docker-host", "none",
		"--containerd-address", e.ContainerdAddress, "--containerd-namespaces", ns}

	stdout, stderr, code := runPullguard(t, e, append(scan, "--output", "json")...)
	if code != 1 {
		t.Fatalf("scan exit status %d, want 1 (a denied record is present); stderr:\n%s", code, stderr)
	}
	var found []string
	for line := range strings.Lines(stdout) {
		var f struct{ Runtime, Namespace, Kind, Reference, Action string }
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("scan -o json line %q: %v", line, err)
		}
		found = append(found, fmt.Sprintf("%s %s %s %s %s", f.Runtime, f.Namespace, f.Kind, f.Reference, f.Action))
	}
	want := fmt.Sprintf("containerd %s image %s removed", ns, evil)
	if len(found) != 1 || found[0] != want {
		t.Errorf("scan found %q, want [%q]", found, want)
	}
	requireCtrImages(t, e, ns, approved, evil) // a scan changes nothing

	if _, stderr, code = runPullguard(t, e, append(scan, "--enforce")...); code != 1 {
		t.Errorf("scan --enforce exit status %d, want 1; stderr:\n%s", code, stderr)
	}
	requireCtrImages(t, e, ns, approved)
}
