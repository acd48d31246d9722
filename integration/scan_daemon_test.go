package integration

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestScanIsWhatTheDaemonDoes: on the same host state, a Docker and a containerd side by side
// (Docker 20.10 with containerd 1.6, Docker 29 with containerd 2.4), what `pullguard scan` lists
// is exactly what the daemon's first reconcile then does, entry for entry: the same names removed
// or untagged, the same containers stopped, nothing more.
func TestScanIsWhatTheDaemonDoes(t *testing.T) {
	forEachStack(t, func(e *Env) string { return e.Engine.Docker + "+" + e.Engine.Containerd }, testScanIsWhatTheDaemonDoes)
}

func testScanIsWhatTheDaemonDoes(t *testing.T, e *Env) {
	removeImagesAtEnd(t, e)
	approved, nginx, evil := e.Ref("approved/busybox:1.0"), e.Ref("library/nginx:1.25"), e.Ref("evil/miner:latest")
	for _, ref := range []string{approved, nginx, evil} {
		e.Docker(t, "pull", "-q", ref)
	}
	alias := e.Ref("evil/alias:1")
	e.Docker(t, "tag", approved, alias) // a denied name on allowed content: untagged
	badC := e.Docker(t, "run", "-d", "--stop-timeout", "1", evil, "sleep", "300")
	okC := e.Docker(t, "run", "-d", "--stop-timeout", "1", approved, "sleep", "300")
	t.Cleanup(func() { _, _ = e.DockerErr(t, "rm", "-f", badC, okC) })
	ns := "pgscan-daemon" // one a containerd: each stack has its own
	ctrPull(t, e, ns, evil)
	ctrPull(t, e, ns, approved)
	ctrPull(t, e, ns, nginx) // the same content as approved: untagged

	path := WritePolicy(t, "", policyYAML(e, "enforce", false, "running: stop"))
	runtimes := []string{"--docker-host", e.DockerHost, "--containerd-address", e.ContainerdAddress, "--containerd-namespaces", ns}
	stdout, stderr, code := runPullguard(t, e, append([]string{"scan", "--policy", path, "--output", "json"}, runtimes...)...)
	if code != 1 {
		t.Fatalf("scan exit status %d, want 1 (denied things present); stderr:\n%s", code, stderr)
	}
	var listed []string
	for line := range strings.Lines(stdout) {
		var f struct {
			Runtime, Namespace, Kind, Reference, Action string
			ContainerID                                 string `json:"container_id"`
		}
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("scan -o json line %q: %v", line, err)
		}
		what := f.Reference
		if f.Kind == "container" {
			what = f.ContainerID
		}
		listed = append(listed, fmt.Sprintf("%s %s %s %s", f.Runtime, f.Namespace, what, f.Action))
	}
	for _, want := range []string{"docker  " + alias + " untagged", "docker  " + badC + " stopped",
		"containerd " + ns + " " + evil + " removed", "containerd " + ns + " " + nginx + " untagged"} {
		if !slices.Contains(listed, want) {
			t.Errorf("scan does not list %q; it lists %q", want, listed)
		}
	}

	d := StartDaemon(t, path, runtimes...)
	entries := d.WaitEntries(t, actDeadline, len(listed), "PULLGUARD_EVENT=reconcile")
	var done []string
	for _, en := range entries {
		what := en["PULLGUARD_IMAGE"]
		if id := en["PULLGUARD_CONTAINER_ID"]; id != "" {
			what = id
		}
		done = append(done, fmt.Sprintf("%s %s %s %s", en["PULLGUARD_RUNTIME"], en["PULLGUARD_NAMESPACE"], what, en["PULLGUARD_ACTION"]))
	}
	slices.Sort(listed)
	slices.Sort(done)
	if !slices.Equal(listed, done) {
		t.Errorf("scan listed:\n  %s\nthe daemon's reconcile did:\n  %s", strings.Join(listed, "\n  "), strings.Join(done, "\n  "))
	}
	if st := containerState(t, e, okC); st != "running" {
		t.Errorf("allowed container %s is %q, want running", okC, st)
	}
}
