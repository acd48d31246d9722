package integration

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// Docker's containerd namespaces: moby (its containers, and on Docker 29 its images) and
// plugins.moby (its managed plugins).
const pluginsNS = "plugins.moby"

// dockerNSPolicy allows approved/** and denies the rest, under local-images: deny (an import
// under an allowed name is not the allowed image), stopping what runs disallowed.
func dockerNSPolicy(e *Env) string {
	return policyYAML(e, "enforce", false, "default: deny", "running: stop", "local-images: deny")
}

// archiveAs is saveAs for ctr import: the `docker save` tarball of src under name alone, in
// manifest.json (dockerd 20.10's archive) and in the OCI index (Docker 29's), which is what
// ctr reads names from when there is one.
func archiveAs(t testing.TB, e *Env, src, name string) string {
	t.Helper()
	path := saveAs(t, e, src, name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "index.json" {
			var idx map[string]any
			if err := json.Unmarshal(body, &idx); err != nil {
				t.Fatalf("index.json: %v", err)
			}
			for _, m := range idx["manifests"].([]any) {
				m.(map[string]any)["annotations"] = map[string]string{
					"io.containerd.image.name":          name,
					"org.opencontainers.image.ref.name": name[strings.LastIndex(name, ":")+1:],
				}
			}
			if body, err = json.Marshal(idx); err != nil {
				t.Fatal(err)
			}
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ctrTaskIDs lists the IDs of the namespace's tasks.
func ctrTaskIDs(t testing.TB, e *Env, ns string) []string {
	t.Helper()
	return sortedFields(e.Ctr(t, ns, "tasks", "ls", "--quiet"))
}

// waitCtrContainerGone waits until neither a task nor a container of ID id is left in ns.
func waitCtrContainerGone(t testing.TB, e *Env, ns, id string) {
	t.Helper()
	Eventually(t, actDeadline, func() (bool, string) {
		tasks := ctrTaskIDs(t, e, ns)
		containers := sortedFields(e.Ctr(t, ns, "containers", "ls", "--quiet"))
		return !slices.Contains(tasks, id) && !slices.Contains(containers, id),
			fmt.Sprintf("namespace %s still holds %s: tasks %q, containers %q", ns, id, tasks, containers)
	})
}

// requireDockerRunning fails the test unless Docker's container id still runs.
func requireDockerRunning(t testing.TB, e *Env, id string) {
	t.Helper()
	if got := e.Docker(t, "inspect", "--format", "{{.State.Running}}", id); got != "true" {
		t.Errorf("Docker's own container %s: running %s, want true", id, got)
	}
}

// TestDockerNamespacesJudged: with Docker and containerd both guarded, what other clients of
// containerd's socket put into Docker's namespaces is judged like anything else in containerd,
// while what dockerd put there stays the Docker guard's. Before pullguard starts, an attacker
// pulls a disallowed image into moby and runs it there with ctr, runs it again under the ID
// of a Docker container that was created but never started, and imports disallowed content
// under an allowed name into plugins.moby and runs that; pullguard stops and removes the three
// containers and deletes both records, journaling each with its namespace, and Docker's
// container starts afterwards as if nothing happened. While it
// runs, the same with a fresh pull and `ctr run` does not stay either. Docker's own container
// of an allowed image, started before and after pullguard, and its image, are left alone.
func TestDockerNamespacesJudged(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		mobyNS := e.DockerNamespace
		allowed, evil, evil2 := e.Ref("approved/busybox:1.0"), e.Ref("evil/miner:latest"), e.Ref("evil/miner:1.0")
		imported := e.Ref("approved/imported:1") // evil's content, under an allowed name
		squatRef := e.Ref("evil/squat:1")        // evil's content under one more denied name
		e.Docker(t, "pull", "-q", evil)
		archive := archiveAs(t, e, evil, imported)
		e.Reset(t)

		// Docker's own, allowed.
		e.Docker(t, "pull", "-q", allowed)
		before := e.Docker(t, "run", "-d", "--stop-timeout", "1", allowed, "sleep", "300")
		// The attacker's, with ctr.
		ctrPull(t, e, mobyNS, evil)
		inMoby := ctrContainerID()
		e.Ctr(t, mobyNS, "run", "-d", evil, inMoby, "sleep", "300")
		// A container Docker lists (created, not started) whose ID the attacker takes in
		// containerd, with disallowed content under another name (so that the journal does not
		// fold its entry into the first's; library/nginx would not do: the test registry's is
		// approved/busybox's content, which pullguard judges by content and allows).
		// dockerd adopts the task as its container's. (Another
		// snapshotter: Docker 29 has made a snapshot of that ID.)
		squatted := e.Docker(t, "create", "--stop-timeout", "1", allowed, "sleep", "300")
		e.Ctr(t, mobyNS, "images", "tag", evil, squatRef)
		e.Ctr(t, mobyNS, "run", "-d", "--snapshotter", "native", squatRef, squatted, "sleep", "300")
		e.Ctr(t, pluginsNS, "images", "import", "--all-platforms", archive)
		inPlugins := ctrContainerID()
		e.Ctr(t, pluginsNS, "run", "-d", imported, inPlugins, "sleep", "300")
		attackers := map[string]string{inMoby: mobyNS, squatted: mobyNS, inPlugins: pluginsNS}
		t.Cleanup(func() {
			// What pullguard left (without it, everything) goes before the stack's reset.
			for id, ns := range attackers {
				_, _ = e.CtrErr(t, ns, "tasks", "rm", "--force", id)
				_, _ = e.CtrErr(t, ns, "containers", "rm", id)
			}
		})
		for id, ns := range attackers {
			if !slices.Contains(ctrTaskIDs(t, e, ns), id) {
				t.Fatalf("the attacker's task %s does not run in namespace %s", id, ns)
			}
		}

		path := WritePolicy(t, "", dockerNSPolicy(e))
		d := startBothGuards(t, e, path)

		for _, c := range []struct{ ns, id, image string }{{mobyNS, inMoby, evil}, {pluginsNS, inPlugins, imported}} {
			waitCtrContainerGone(t, e, c.ns, c.id)
			entry := d.WaitEntry(t, actDeadline, "PULLGUARD_CONTAINER_ID="+c.id)
			requireFields(t, entry, map[string]string{
				"MESSAGE_ID":          msgActionTaken,
				"PULLGUARD_ACTION":    "stopped",
				"PULLGUARD_RUNTIME":   "containerd",
				"PULLGUARD_NAMESPACE": c.ns,
			})
			if !strings.HasPrefix(entry["PULLGUARD_IMAGE"], c.image) {
				t.Errorf("the entry for %s names image %q, want %s", c.id, entry["PULLGUARD_IMAGE"], c.image)
			}
		}
		waitCtrContainerGone(t, e, mobyNS, squatted)
		requireFields(t, d.WaitEntry(t, actDeadline, "PULLGUARD_CONTAINER_ID="+squatted), map[string]string{
			"MESSAGE_ID": msgActionTaken, "PULLGUARD_ACTION": "stopped", "PULLGUARD_RUNTIME": "containerd",
			"PULLGUARD_NAMESPACE": mobyNS})
		e.Docker(t, "start", squatted)
		requireDockerRunning(t, e, squatted)
		waitCtrImageGone(t, e, mobyNS, evil)
		waitCtrImageGone(t, e, pluginsNS, imported)
		gone := d.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+imported, "PULLGUARD_NAMESPACE="+pluginsNS,
			"PULLGUARD_ACTION=removed")
		requireFields(t, gone, map[string]string{"MESSAGE_ID": msgActionTaken, "PULLGUARD_RUNTIME": "containerd"})
		if !strings.Contains(gone["PULLGUARD_REASON"], reasonLocalContent) {
			t.Errorf("PULLGUARD_REASON = %q, want %q", gone["PULLGUARD_REASON"], reasonLocalContent)
		}

		// While pullguard runs: Docker starts its own, and the attacker pulls and runs again.
		// pullguard is paused meanwhile, so that the record is still there for ctr run: it
		// then reads the events containerd kept for it, or, had it lost them, its next
		// reconcile finds the containers.
		after := e.Docker(t, "run", "-d", "--stop-timeout", "1", allowed, "sleep", "300")
		settle(t, e)
		d.Pause(t)
		ran := map[string]string{}
		for _, ns := range []string{mobyNS, pluginsNS} {
			ctrPull(t, e, ns, evil2)
			id := ctrContainerID()
			ran[ns] = id
			attackers[id] = ns
			e.Ctr(t, ns, "run", "-d", evil2, id, "sleep", "300")
		}
		d.Signal(t, syscall.SIGCONT)
		for ns, id := range ran {
			waitCtrContainerGone(t, e, ns, id)
			entry := d.WaitEntry(t, actDeadline, "PULLGUARD_CONTAINER_ID="+id)
			requireFields(t, entry, map[string]string{"MESSAGE_ID": msgActionTaken, "PULLGUARD_RUNTIME": "containerd",
				"PULLGUARD_NAMESPACE": ns})
			t.Logf("%s in %s: PULLGUARD_EVENT=%s PULLGUARD_ACTION=%s", id, ns, entry["PULLGUARD_EVENT"], entry["PULLGUARD_ACTION"])
		}
		for _, ns := range []string{mobyNS, pluginsNS} {
			waitCtrImageGone(t, e, ns, evil2)
		}
		settle(t, e)

		// Docker's own are untouched, and judged by the Docker guard alone: nothing acted on
		// them, nor logged by the containerd guard for them.
		for _, id := range []string{before, after} {
			requireDockerRunning(t, e, id)
			if entries := d.Entries(t, "PULLGUARD_CONTAINER_ID="+id); len(entries) > 0 {
				t.Errorf("entries for Docker's own allowed container %s:\n%s", id, describeEntries(entries))
			}
		}
		requireDockerRunning(t, e, squatted)
		if entries := d.Entries(t, "PULLGUARD_CONTAINER_ID="+squatted); len(entries) != 1 {
			t.Errorf("%d entries for %s, want the squatter's alone:\n%s", len(entries), squatted, describeEntries(entries))
		}
		requireImage(t, e, allowed, "")
		if n := len(actionsOn(t, d, allowed)); n > 0 {
			t.Errorf("%d action entries for the allowed %s", n, allowed)
		}
		if e.Engine.Modern && !slices.Contains(e.CtrImages(t, mobyNS), allowed) {
			t.Errorf("Docker 29's record of %s is gone from namespace %s", allowed, mobyNS)
		}
	})
}
