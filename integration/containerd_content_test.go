package integration

// End-to-end tests of judging containerd containers by their content (issue 24): whatever a
// socket user writes — a container's Image field, CRI's image-name label, an image record named
// <allowed repo>@<its own digest> — proves nothing. The attacker is a small containerd client
// (internal/lyingclient) and ctr, as anyone with the socket has them.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// lyingAttempts is how many lying containers each case runs.
const lyingAttempts = 5

var buildLyingClient = sync.OnceValues(func() (string, error) { return buildTestClient("lyingclient") })

// buildTestClient builds the attacker's client integration/internal/NAME into a temporary
// directory and returns its path.
func buildTestClient(name string) (string, error) {
	dir, err := os.MkdirTemp("", "pg-"+name+"-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	if out, err := exec.Command("go", "build", "-o", bin, "./internal/"+name).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./internal/%s: %w\n%s", name, err, out)
	}
	return bin, nil
}

// lyingResult is what lyingclient prints.
type lyingResult struct {
	Lease       string `json:"lease"`
	Chain       string `json:"chain"`
	Container   bool   `json:"container"`
	TaskCreated bool   `json:"taskCreated"`
	TaskStarted bool   `json:"taskStarted"`
	Pid         int    `json:"pid"`
	Err         string `json:"err"`
	StartedAt   string `json:"startedAt"`
}

// runLyingClient pulls content under a lease and runs it as container id, claiming image
// claim (in the Image field, or in CRI's label with criLabel).
func runLyingClient(t testing.TB, e *Env, ns, content, claim, id string, criLabel bool) lyingResult {
	t.Helper()
	bin, err := buildLyingClient()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-address", e.ContainerdAddress, "-namespace", ns, "-pull", content, "-image", claim, "-id", id}
	if criLabel {
		args = append(args, "-cri-label")
	}
	out, err := e.run(bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	var res lyingResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("lyingclient printed %q: %v", out, err)
	}
	// The attacker's lease would keep its content for two hours, into the next tests.
	t.Cleanup(func() { e.Ctr(t, ns, "leases", "rm", "--sync", res.Lease) })
	t.Logf("lyingclient: %+v", res)
	return res
}

// processesOf lists the host's processes that belong to container id of namespace ns: its
// shim (started with -id ID), and whatever runs in its cgroup (runc init, the container's
// process).
func processesOf(ns, id string) []string {
	var found []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmd, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		cg, _ := os.ReadFile(filepath.Join(d, "cgroup"))
		shim := slices.Contains(args, "-id") && slices.Contains(args, id) && strings.Contains(args[0], "shim")
		if shim || strings.Contains(string(cg), "/"+ns+"/"+id+"\n") || strings.Contains(string(cg), "/"+ns+"/"+id+"/") {
			found = append(found, filepath.Base(d)+" "+strings.Join(args, " "))
		}
	}
	return found
}

// requireContainerGone waits until container id has no container record, no task and no
// process left (shim, runc init, its own).
func requireContainerGone(t testing.TB, e *Env, ns, id string) {
	t.Helper()
	Eventually(t, actDeadline, func() (bool, string) {
		ctrs := sortedFields(e.Ctr(t, ns, "containers", "ls", "--quiet"))
		tasks := ctrTaskIDs(t, e, ns)
		procs := processesOf(ns, id)
		return !slices.Contains(ctrs, id) && !slices.Contains(tasks, id) && len(procs) == 0,
			fmt.Sprintf("container %s in %s: containers %q, tasks %q, processes %q", id, ns, ctrs, tasks, procs)
	})
}

// TestContainerdLyingContainer: a client pulls disallowed content under a lease (content and
// snapshots survive the deletion of its record), creates a container from a snapshot of it
// that claims an allowed image — in its Image field, or in k8s.io with an empty Image and
// CRI's image-name label — and starts its task at once. pullguard stops the task, removes
// the container, says why in the journal, and leaves no task, runc init or shim behind.
func TestContainerdLyingContainer(t *testing.T) {
	ForEachContainerd(t, func(t *testing.T, e *Env) {
		d := startContainerdGuard(t, e, WritePolicy(t, "", policyWithRunning(e, "enforce", "keep")))
		allowed, evil := e.Ref("approved/busybox:1.0"), e.Ref("evil/miner:1.0")
		for _, tc := range []struct {
			ns       string
			criLabel bool
		}{{"default", false}, {"k8s.io", true}} {
			name := "image-field"
			if tc.criLabel {
				name = "cri-label"
			}
			t.Run(name, func(t *testing.T) {
				ctrPull(t, e, tc.ns, allowed) // the claimed name is a real, allowed record
				// Several times: the task's creation races the removal in ways each run
				// meets differently (created before, during or after it).
				var ids []string
				for range lyingAttempts {
					id := ctrContainerID()
					res := runLyingClient(t, e, tc.ns, evil, allowed, id, tc.criLabel)
					if !res.Container {
						t.Fatalf("the lying container was not even created: %s", res.Err)
					}
					requireContainerGone(t, e, tc.ns, id)
					ids = append(ids, id)
				}
				// Identical entries are flood-controlled: the first one is written at once.
				entry := d.WaitEntry(t, actDeadline, "PULLGUARD_CONTAINER_ID="+ids[0])
				requireFields(t, entry, map[string]string{"MESSAGE_ID": msgActionTaken, "PULLGUARD_NAMESPACE": tc.ns})
				if a := entry["PULLGUARD_ACTION"]; a != "stopped" && a != "removed" {
					t.Errorf("PULLGUARD_ACTION = %q, want stopped or removed", a)
				}
				// Its records were still there (evil/** is denied; CRI's record by image ID
				// names nothing), or gone (content of no image).
				reason := entry["PULLGUARD_REASON"]
				if !strings.Contains(reason, "is the content of no image in namespace "+tc.ns) &&
					!strings.Contains(reason, "deny rule") && !strings.Contains(reason, "no name") {
					t.Errorf("PULLGUARD_REASON = %q, want it to say the content is no allowed image's", reason)
				}
				if !slices.Contains(e.CtrImages(t, tc.ns), allowed) {
					t.Errorf("the allowed %s was deleted", allowed)
				}
			})
		}
	})
}

// TestContainerdSelfVouchingImport: an OCI archive whose index.json names disallowed content
// <allowed repo>@<its own digest> (the io.containerd.image.name annotation), imported into
// k8s.io with ctr. The name is the archive's own statement: the registry does not serve that
// digest in that repository, so the record is deleted, and a container run from it while it
// existed is stopped and removed.
func TestContainerdSelfVouchingImport(t *testing.T) {
	ForEachContainerd(t, func(t *testing.T, e *Env) {
		const ns = "k8s.io"
		evil := e.Ref("evil/miner:1.0")
		archive, dg := selfVouchingArchive(t, e, evil)
		name := e.Ref("approved/busybox") + "@" + dg
		d := startContainerdGuard(t, e, WritePolicy(t, "", provenancePolicy(e, "deny")))

		// The attacker imports and runs at once, again and again, until a container exists.
		id := ctrContainerID()
		ran := false
		for try := 0; try < 20 && !ran; try++ {
			if _, err := e.CtrErr(t, ns, "images", "import", "--all-platforms", archive); err != nil {
				t.Logf("ctr import: %v", err)
			}
			_, err := e.CtrErr(t, ns, "run", "-d", name, id, "sleep", "3600")
			ran = err == nil || slices.Contains(sortedFields(e.Ctr(t, ns, "containers", "ls", "--quiet")), id)
		}
		waitCtrImageGone(t, e, ns, name)
		entry := d.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+name, "MESSAGE_ID="+msgActionTaken)
		if !strings.Contains(entry["PULLGUARD_REASON"], "did not come from an allowed repository") {
			t.Errorf("PULLGUARD_REASON = %q, want it to say the content did not come from an allowed repository", entry["PULLGUARD_REASON"])
		}
		if ran {
			requireContainerGone(t, e, ns, id)
			d.WaitEntry(t, actDeadline, "PULLGUARD_CONTAINER_ID="+id)
		} else {
			t.Log("ctr run never found the record: pullguard deleted it first every time")
		}
	})
}

// selfVouchingArchive makes, with skopeo, an OCI archive of src whose index.json names the
// content <approved/busybox>@<its own manifest digest> in containerd's image-name annotation.
// It returns the archive and that digest.
func selfVouchingArchive(t testing.TB, e *Env, src string) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if _, err := e.run("skopeo", "copy", "--src-tls-verify=false", "docker://"+src, "oci:"+dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "index.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var index map[string]any
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatal(err)
	}
	ms, _ := index["manifests"].([]any)
	if len(ms) != 1 {
		t.Fatalf("index.json of %s has %d manifests, want 1", src, len(ms))
	}
	m := ms[0].(map[string]any)
	dg, _ := m["digest"].(string)
	m["annotations"] = map[string]any{"io.containerd.image.name": e.Ref("approved/busybox") + "@" + dg}
	if raw, err = json.Marshal(index); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "self-vouching.tar")
	if out, err := exec.Command("tar", "-C", dir, "-cf", archive, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	return archive, dg
}
