package integration

// End-to-end tests of pullguard guarding containerd (issue 5): a real containerd from Debian on
// a private socket, pulls and containers made with ctr, outcomes read back with ctr and from
// journald.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"
)

// startContainerdGuard starts pullguard on the environment's containerd only (StartDaemon).
func startContainerdGuard(t testing.TB, e *Env, policyPath string, extra ...string) *Pullguard {
	t.Helper()
	return StartDaemon(t, policyPath, append([]string{"--docker-host", "none",
		"--containerd-address", e.ContainerdAddress}, extra...)...)
}

// ctrPull pulls ref into the namespace as a user would, with ctr.
func ctrPull(t testing.TB, e *Env, ns, ref string) {
	t.Helper()
	e.Ctr(t, ns, "images", "pull", "--plain-http", ref)
}

// waitCtrImageGone waits until no image record named ref is left in the namespace.
func waitCtrImageGone(t testing.TB, e *Env, ns, ref string) {
	t.Helper()
	Eventually(t, actDeadline, func() (bool, string) {
		imgs := e.CtrImages(t, ns)
		return !slices.Contains(imgs, ref), fmt.Sprintf("%s is still in namespace %s: %q", ref, ns, imgs)
	})
}

// requireCtrImages fails the test unless the namespace holds exactly the image records want.
func requireCtrImages(t testing.TB, e *Env, ns string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := e.CtrImages(t, ns); !slices.Equal(got, want) {
		t.Errorf("images in namespace %s = %q, want %q", ns, got, want)
	}
}

// ctrTargets maps each image record of the namespace to its target (manifest) digest.
func ctrTargets(t testing.TB, e *Env, ns string) map[string]string {
	t.Helper()
	targets := map[string]string{}
	for i, line := range strings.Split(e.Ctr(t, ns, "images", "ls"), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 3 { // the header: REF TYPE DIGEST SIZE PLATFORMS LABELS
			continue
		}
		targets[f[0]] = f[2]
	}
	return targets
}

// ctrConfigDigest is the config digest (the image ID) of the manifest in the namespace's
// content store: the name CRI gives an image's third record.
func ctrConfigDigest(t testing.TB, e *Env, ns, manifest string) string {
	t.Helper()
	var m struct {
		Config struct{ Digest string }
	}
	out := e.Ctr(t, ns, "content", "get", manifest)
	if err := json.Unmarshal([]byte(out), &m); err != nil || m.Config.Digest == "" {
		t.Fatalf("manifest %s: no config digest (%v) in %q", manifest, err, out)
	}
	return m.Config.Digest
}

// pullCRIStyle pulls ref into the namespace and adds the two other records a CRI pull makes
// for one image: repo@<manifest digest> and sha256:<config digest>. It returns the three
// names. (The environment's containerd runs without its CRI plugin; kubelet's pulls through
// CRI leave exactly these records.)
func pullCRIStyle(t testing.TB, e *Env, ns, ref string) []string {
	t.Helper()
	ctrPull(t, e, ns, ref)
	manifest := ctrTargets(t, e, ns)[ref]
	if manifest == "" {
		t.Fatalf("%s is not in namespace %s after ctr pull", ref, ns)
	}
	repo := ref[:strings.LastIndex(ref, ":")]
	names := []string{ref, repo + "@" + manifest, ctrConfigDigest(t, e, ns, manifest)}
	for _, n := range names[1:] {
		e.Ctr(t, ns, "images", "tag", ref, n)
	}
	return names
}

// ctrContainerID is a container ID no other test or run uses. It is short: containerd allows
// 76 characters, and ctr puts runc's state for it under /run/containerd/runc/NAMESPACE on the
// host, where a leftover of an earlier run must not collide.
func ctrContainerID() string {
	return "pgtest-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// ctrSnapshots lists the snapshot keys of the namespace (default snapshotter).
func ctrSnapshots(t testing.TB, e *Env, ns string) []string {
	t.Helper()
	var keys []string
	for i, line := range strings.Split(e.Ctr(t, ns, "snapshots", "ls"), "\n") {
		if f := strings.Fields(line); i > 0 && len(f) > 0 {
			keys = append(keys, f[0])
		}
	}
	return keys
}

// TestContainerdPullEnforced: pulls with ctr into the Kubernetes namespace and the default
// one, while pullguard runs. A disallowed image is deleted with its content; a name the policy
// denies on content it allows under another name is removed alone (never the allowed name);
// an allowed image stays.
func TestContainerdPullEnforced(t *testing.T) {
	ForEachContainerd(t, func(t *testing.T, e *Env) {
		path := WritePolicy(t, "", policyWithRunning(e, "enforce", "keep"))
		d := startContainerdGuard(t, e, path)
		allowed, alias, evil := e.Ref("approved/busybox:1.0"), e.Ref("library/nginx:1.25"), e.Ref("evil/miner:latest")

		for _, ns := range []string{"k8s.io", "default"} {
			t.Run(ns, func(t *testing.T) {
				ctrPull(t, e, ns, allowed)
				allowedTarget := ctrTargets(t, e, ns)[allowed]

				// Same content as the allowed image, under a name the default denies.
				ctrPull(t, e, ns, alias)
				waitCtrImageGone(t, e, ns, alias)
				untagged := d.WaitEntry(t, actDeadline, "PULLGUARD_NAMESPACE="+ns, "PULLGUARD_ACTION=untagged")
				if img := untagged["PULLGUARD_IMAGE"]; img != alias {
					t.Errorf("untagged entry names %q, want %s", img, alias)
				}

				ctrPull(t, e, ns, evil)
				waitCtrImageGone(t, e, ns, evil)
				removed := d.WaitEntry(t, actDeadline, "PULLGUARD_NAMESPACE="+ns, "PULLGUARD_ACTION=removed")
				requireFields(t, removed, map[string]string{
					"MESSAGE_ID":        msgActionTaken,
					"PULLGUARD_RUNTIME": "containerd",
					"PULLGUARD_MODE":    "enforce",
					"PULLGUARD_RULE":    path + ":7",
				})
				evilTarget := removed["PULLGUARD_IMAGE_ID"]
				if removed["PULLGUARD_IMAGE"] != evil || !strings.HasPrefix(evilTarget, "sha256:") {
					t.Errorf("removed entry: PULLGUARD_IMAGE=%q PULLGUARD_IMAGE_ID=%q, want %s and its digest",
						removed["PULLGUARD_IMAGE"], evilTarget, evil)
				}

				want := []string{allowed}
				if e.Engine.Modern && ns == "k8s.io" {
					// containerd 2.4.2 runs CRI here, which adds its sha256:<config> record to
					// every image in k8s.io (the allowed content's: kept).
					want = append(want, ctrConfigDigest(t, e, ns, allowedTarget))
				}
				slices.Sort(want)
				// (CRI's record of the disallowed image is deleted in a pass of its own.)
				Eventually(t, actDeadline, func() (bool, string) {
					got := e.CtrImages(t, ns)
					return slices.Equal(got, want), fmt.Sprintf("images in namespace %s = %q, want %q", ns, got, want)
				})
				if got := ctrTargets(t, e, ns)[allowed]; got != allowedTarget {
					t.Errorf("%s points at %s now, was %s", allowed, got, allowedTarget)
				}
				// The disallowed image's content is collected, the allowed content stays. (Not
				// necessarily by the synchronous delete itself: ctr holds a lease on what it
				// pulls until it has unpacked it, and containerd collects it later. How much
				// later is containerd's garbage collector's choice: it spends at most 2 % of its
				// time collecting (pause_threshold), so after a slow collection on a busy
				// machine the next one waits many seconds; hence the longer wait.)
				Eventually(t, gcDeadline, func() (bool, string) {
					content := strings.Fields(e.Ctr(t, ns, "content", "ls", "--quiet"))
					return !slices.Contains(content, evilTarget),
						fmt.Sprintf("the manifest %s of the removed image is still in the content store", evilTarget)
				})
				if content := strings.Fields(e.Ctr(t, ns, "content", "ls", "--quiet")); !slices.Contains(content, allowedTarget) {
					t.Errorf("the manifest %s of the allowed image is gone from the content store", allowedTarget)
				}
				for _, en := range d.Entries(t, "PULLGUARD_NAMESPACE="+ns) {
					if strings.HasPrefix(en["PULLGUARD_IMAGE"], allowed) {
						t.Errorf("a journal entry acts on the allowed %s: %s", allowed, en["MESSAGE"])
					}
				}
			})
		}
	})
}

// TestContainerdReconcileCRIRecords: images pulled while pullguard was not running, with the
// three records a CRI pull makes (repo:tag, repo@digest, sha256:<config>), are judged by the
// start-up reconcile: every record of the disallowed image goes, so none keeps its content
// alive; the allowed image keeps all three; a denied alias of allowed content goes alone.
func TestContainerdReconcileCRIRecords(t *testing.T) {
	ForEachContainerd(t, func(t *testing.T, e *Env) {
		const ns = "k8s.io"
		evil := pullCRIStyle(t, e, ns, e.Ref("evil/miner:latest"))
		allowed := pullCRIStyle(t, e, ns, e.Ref("approved/busybox:1.0"))
		alias := e.Ref("library/nginx:1.25")
		ctrPull(t, e, ns, alias)

		d := startContainerdGuard(t, e, WritePolicy(t, "", policyWithRunning(e, "enforce", "keep")))

		// startContainerdGuard returned after the first reconcile.
		requireCtrImages(t, e, ns, allowed...)
		entries := d.Entries(t, "PULLGUARD_NAMESPACE="+ns, "PULLGUARD_EVENT=reconcile")
		var removed, untagged []string
		for _, en := range entries {
			switch en["PULLGUARD_ACTION"] {
			case "removed":
				removed = append(removed, en["PULLGUARD_IMAGE"])
			case "untagged":
				untagged = append(untagged, en["PULLGUARD_IMAGE"])
			default:
				t.Errorf("unexpected entry: %s", en["MESSAGE"])
			}
		}
		if len(removed) != len(evil) {
			t.Errorf("removed entries name %q, want one for each of %q", removed, evil)
		}
		for _, name := range evil {
			if !slices.ContainsFunc(removed, func(img string) bool { return strings.HasPrefix(img, name) }) {
				t.Errorf("no removed entry for the record %s (entries: %q)", name, removed)
			}
		}
		if len(untagged) != 1 || !strings.HasPrefix(untagged[0], alias) {
			t.Errorf("untagged entries name %q, want one for %s", untagged, alias)
		}
	})
}

// TestContainerdRunningStopOnReload: a container runs from an allowed image; a policy reload
// makes the image disallowed with running: stop. pullguard kills and deletes the task, deletes
// the container with its snapshot, and deletes the image.
func TestContainerdRunningStopOnReload(t *testing.T) {
	ForEachContainerd(t, func(t *testing.T, e *Env) {
		const ns = "default"
		ref := e.Ref("approved/busybox:1.0")
		dir := t.TempDir()
		d := startContainerdGuard(t, e, WritePolicy(t, dir, policyWithRunning(e, "enforce", "keep")))

		ctrPull(t, e, ns, ref)
		id := ctrContainerID()
		e.Ctr(t, ns, "run", "-d", ref, id, "sleep", "300")
		if tasks := e.Ctr(t, ns, "tasks", "ls"); !strings.Contains(tasks, id) || !strings.Contains(tasks, "RUNNING") {
			t.Fatalf("the container's task is not running:\n%s", tasks)
		}
		if !slices.Contains(ctrSnapshots(t, e, ns), id) {
			t.Fatalf("no snapshot %s for the container", id)
		}
		if n := len(d.Entries(t, "PULLGUARD_CONTAINER_ID="+id)); n > 0 {
			t.Fatalf("pullguard acted on the container of an allowed image (%d entries)", n)
		}

		// approved/** is no longer allowed: only myorg/base is.
		WritePolicy(t, dir, fmt.Sprintf("mode: enforce\ndefault: deny\nrunning: stop\nallow:\n  - image: %s/myorg/base\n", e.Registry))
		d.WaitEntries(t, actDeadline, 2, "MESSAGE_ID="+msgPolicyLoaded)

		Eventually(t, actDeadline, func() (bool, string) {
			tasks := e.Ctr(t, ns, "tasks", "ls", "--quiet")
			containers := e.Ctr(t, ns, "containers", "ls", "--quiet")
			return !strings.Contains(tasks+containers, id), fmt.Sprintf("tasks %q, containers %q still hold %s", tasks, containers, id)
		})
		stopped := d.WaitEntry(t, actDeadline, "PULLGUARD_CONTAINER_ID="+id)
		requireFields(t, stopped, map[string]string{
			"MESSAGE_ID":          msgActionTaken,
			"PULLGUARD_ACTION":    "stopped",
			"PULLGUARD_EVENT":     "reconcile",
			"PULLGUARD_RUNTIME":   "containerd",
			"PULLGUARD_NAMESPACE": ns,
			"PULLGUARD_IMAGE":     ref,
		})
		waitCtrImageGone(t, e, ns, ref)
		// The container's snapshot went with it, and the image's layers with the image.
		Eventually(t, actDeadline, func() (bool, string) {
			snaps := ctrSnapshots(t, e, ns)
			return len(snaps) == 0, fmt.Sprintf("snapshots left in %s: %q", ns, snaps)
		})
		if _, err := os.Stat(filepath.Join("/run/containerd/runc", ns, id)); err == nil {
			t.Errorf("runc still has state for %s", id)
		}
	})
}

// TestContainerdNewNamespace: a namespace that did not exist when pullguard started (a new
// tenant) is guarded like the others.
func TestContainerdNewNamespace(t *testing.T) {
	ForEachContainerd(t, func(t *testing.T, e *Env) {
		d := startContainerdGuard(t, e, WritePolicy(t, "", policyWithRunning(e, "enforce", "keep")))
		ns := "tenant-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		if slices.Contains(strings.Fields(e.Ctr(t, "default", "namespaces", "ls", "--quiet")), ns) {
			t.Fatalf("namespace %s exists already", ns)
		}
		t.Cleanup(func() {
			if refs := e.CtrImages(t, ns); len(refs) > 0 {
				// --sync: the namespace can go only once the content is collected too.
				e.Ctr(t, ns, append([]string{"images", "rm", "--sync"}, refs...)...)
			}
			if _, err := e.CtrErr(t, "default", "namespaces", "rm", ns); err != nil {
				t.Logf("namespace %s stays: %v", ns, err)
			}
		})
		allowed, evil := e.Ref("approved/busybox:1.1"), e.Ref("evil/miner:1.0")

		ctrPull(t, e, ns, allowed)
		ctrPull(t, e, ns, evil)

		waitCtrImageGone(t, e, ns, evil)
		requireCtrImages(t, e, ns, allowed)
		en := d.WaitEntry(t, actDeadline, "PULLGUARD_NAMESPACE="+ns)
		requireFields(t, en, map[string]string{"PULLGUARD_ACTION": "removed", "PULLGUARD_RUNTIME": "containerd"})
	})
}

// TestContainerdRestartReconnect: containerd is killed and restarted while pullguard runs, and
// a disallowed image is pulled after containerd is back but before pullguard has reconnected
// (pullguard is stopped with SIGSTOP across the restart and the pull, so it cannot see the
// pull's event: containerd never replays events). The reconcile after the reconnect deletes it,
// and pullguard follows events again afterwards.
func TestContainerdRestartReconnect(t *testing.T) {
	ForEachContainerd(t, func(t *testing.T, e *Env) {
		const ns = "default"
		d := startContainerdGuard(t, e, WritePolicy(t, "", policyWithRunning(e, "enforce", "keep")))
		evil, evil2 := e.Ref("evil/miner:latest"), e.Ref("evil/miner:1.0")

		d.Pause(t)
		e.Restart(t, "containerd")
		ctrPull(t, e, ns, evil)
		requireCtrImages(t, e, ns, evil) // pullguard is stopped: nothing acts yet
		d.Signal(t, syscall.SIGCONT)

		waitCtrImageGone(t, e, ns, evil)
		en := d.WaitEntries(t, actDeadline, 1, "PULLGUARD_NAMESPACE="+ns, "PULLGUARD_ACTION=removed")
		requireFields(t, en[0], map[string]string{"PULLGUARD_EVENT": "reconcile", "PULLGUARD_RUNTIME": "containerd"})
		if en[0]["PULLGUARD_IMAGE"] != evil {
			t.Errorf("removed entry names %q, want %s", en[0]["PULLGUARD_IMAGE"], evil)
		}

		// The new subscription works: a pull now is handled by its event.
		ctrPull(t, e, ns, evil2)
		waitCtrImageGone(t, e, ns, evil2)
		en = d.WaitEntries(t, actDeadline, 2, "PULLGUARD_NAMESPACE="+ns, "PULLGUARD_ACTION=removed")
		if ev := en[1]["PULLGUARD_EVENT"]; ev == "reconcile" || ev == "" {
			t.Errorf("the pull after the reconnect was handled by %q, want its event", ev)
		}
		if n := len(d.Entries(t, "MESSAGE_ID="+msgRuntimeDisconnected)); n != 1 {
			t.Errorf("%d journal entries say pullguard lost containerd, want 1", n)
		}
		if n := len(d.Entries(t, "MESSAGE_ID="+msgRuntimeConnected)); n != 2 {
			t.Errorf("%d journal entries say pullguard connected to containerd, want 2 (start, reconnect)", n)
		}
		// dockerd, which the other tests use, is connected to the new containerd too (Docker 29
		// takes a few seconds to notice).
		// (`docker ps` answers from dockerd's memory; listing images needs containerd.)
		Eventually(t, actDeadline, func() (bool, string) {
			_, errPS := e.DockerErr(t, "ps")
			_, errImages := e.DockerErr(t, "image", "ls")
			return errPS == nil && errImages == nil, fmt.Sprintf("dockerd does not answer: %v %v", errPS, errImages)
		})
	})
}

// TestContainerdJournalFieldsMatchDocker: a disallowed pull removed from containerd is logged
// with the same journal fields as one removed from Docker, with PULLGUARD_RUNTIME=containerd
// and PULLGUARD_NAMESPACE added, so that one journalctl filter finds both.
func TestContainerdJournalFieldsMatchDocker(t *testing.T) {
	ForEachContainerd(t, func(t *testing.T, e *Env) {
		path := WritePolicy(t, "", policyWithRunning(e, "enforce", "keep"))
		d := StartDaemon(t, path, "--docker-host", e.DockerHost, "--containerd-address", e.ContainerdAddress)
		evil := e.Ref("evil/miner:latest")

		e.Docker(t, "pull", "--quiet", evil)
		waitImageGone(t, e, evil)
		docker := d.WaitEntry(t, actDeadline, "PULLGUARD_RUNTIME=docker", "PULLGUARD_ACTION=removed")

		ctrPull(t, e, "default", evil)
		waitCtrImageGone(t, e, "default", evil)
		cd := d.WaitEntry(t, actDeadline, "PULLGUARD_RUNTIME=containerd", "PULLGUARD_ACTION=removed")

		fieldsOf := func(en map[string]string) []string {
			var keys []string
			for k := range en {
				if strings.HasPrefix(k, "PULLGUARD_") || k == "MESSAGE_ID" || k == "PRIORITY" || k == "SYSLOG_IDENTIFIER" {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			return keys
		}
		want := append(fieldsOf(docker), "PULLGUARD_NAMESPACE")
		slices.Sort(want)
		if got := fieldsOf(cd); !slices.Equal(got, want) {
			t.Errorf("containerd entry fields = %q,\nwant Docker's and PULLGUARD_NAMESPACE: %q", got, want)
		}
		for _, k := range []string{"MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "PULLGUARD_ACTION", "PULLGUARD_MODE",
			"PULLGUARD_REASON", "PULLGUARD_RULE", "PULLGUARD_POLICY_HASH"} {
			if docker[k] == "" || cd[k] != docker[k] {
				t.Errorf("%s: containerd %q, Docker %q", k, cd[k], docker[k])
			}
		}
		requireFields(t, cd, map[string]string{
			"PULLGUARD_RUNTIME":   "containerd",
			"PULLGUARD_NAMESPACE": "default",
			"PULLGUARD_RULE":      path + ":7",
		})
		for _, en := range []map[string]string{docker, cd} {
			if !strings.HasPrefix(en["PULLGUARD_IMAGE"], evil) {
				t.Errorf("PULLGUARD_RUNTIME=%s: PULLGUARD_IMAGE=%q, want %s", en["PULLGUARD_RUNTIME"], en["PULLGUARD_IMAGE"], evil)
			}
			if en["PULLGUARD_EVENT"] == "" || !strings.HasPrefix(en["PULLGUARD_IMAGE_ID"], "sha256:") {
				t.Errorf("PULLGUARD_RUNTIME=%s: PULLGUARD_EVENT=%q PULLGUARD_IMAGE_ID=%q", en["PULLGUARD_RUNTIME"],
					en["PULLGUARD_EVENT"], en["PULLGUARD_IMAGE_ID"])
			}
		}
		t.Logf("Docker: PULLGUARD_EVENT=%s PULLGUARD_IMAGE=%s PULLGUARD_IMAGE_ID=%s", docker["PULLGUARD_EVENT"],
			docker["PULLGUARD_IMAGE"], docker["PULLGUARD_IMAGE_ID"])
		t.Logf("containerd: PULLGUARD_EVENT=%s PULLGUARD_IMAGE=%s PULLGUARD_IMAGE_ID=%s", cd["PULLGUARD_EVENT"],
			cd["PULLGUARD_IMAGE"], cd["PULLGUARD_IMAGE_ID"])
	})
}

// TestContainerdFloodControl: the same denied pull retried five times within a minute, as
// kubelet retries a pod's image, makes one journal entry, not five; the retries are counted
// and written when the window closes (here: when pullguard stops).
func TestContainerdFloodControl(t *testing.T) {
	ForEachContainerd(t, func(t *testing.T, e *Env) {
		const pulls = 5
		ns := "k8s.io"
		if e.Engine.Modern {
			// containerd 2.4.2 runs CRI, which gives each pull into k8s.io a sha256:<config>
			// record of its own (and its removal an entry); the pulls here are ctr's.
			ns = "default"
		}
		d := startContainerdGuard(t, e, WritePolicy(t, "", policyWithRunning(e, "enforce", "keep")))
		evil := e.Ref("evil/miner:latest")

		for range pulls {
			ctrPull(t, e, ns, evil)
			waitCtrImageGone(t, e, ns, evil)
		}
		matches := []string{"PULLGUARD_NAMESPACE=" + ns, "PULLGUARD_ACTION=removed"}
		d.WaitEntry(t, actDeadline, matches...)
		time.Sleep(time.Second) // entries are written asynchronously: give extra ones time to show
		if got := d.Entries(t, matches...); len(got) != 1 {
			t.Fatalf("%d journal entries for %d identical denied pulls, want 1:\n%s", len(got), pulls, describeEntries(got))
		} else if r := got[0]["PULLGUARD_REPEATS"]; r != "" {
			t.Errorf("the first entry has PULLGUARD_REPEATS=%s", r)
		}

		if err := d.Stop(t); err != nil {
			t.Fatalf("pullguard exited with %v", err)
		}
		got := d.WaitEntries(t, actDeadline, 2, matches...)
		total := 0
		for _, en := range got {
			n := 0
			if r := en["PULLGUARD_REPEATS"]; r != "" {
				var err error
				if n, err = strconv.Atoi(r); err != nil {
					t.Fatalf("PULLGUARD_REPEATS=%q", r)
				}
			}
			total += 1 + n
		}
		if len(got) != 2 || total != pulls {
			t.Errorf("after stopping: %d entries standing for %d pulls, want 2 standing for %d:\n%s", len(got), total, pulls, describeEntries(got))
		}
	})
}

// describeEntries is one line for each entry: its MESSAGE and PULLGUARD_REPEATS.
func describeEntries(entries []map[string]string) string {
	var b strings.Builder
	for _, en := range entries {
		fmt.Fprintf(&b, "  %s (PULLGUARD_REPEATS=%s)\n", en["MESSAGE"], en["PULLGUARD_REPEATS"])
	}
	return b.String()
}

// containerdBenchPulls is the least number of pulls BenchmarkContainerdPullToDeletion measures.
const containerdBenchPulls = 50

// BenchmarkContainerdPullToDeletion measures how long a disallowed image exists in containerd:
// from its /images/create event to its /images/delete event, both stamped by containerd, for
// pulls with ctr into k8s.io while pullguard runs. It reports the median and p99 over at least
// 50 pulls (whatever b.N; run it with -benchtime=1x), and ns/op per pull-and-delete cycle.
func BenchmarkContainerdPullToDeletion(b *testing.B) {
	ForEachContainerdBench(b, func(b *testing.B, e *Env) {
		const ns = "k8s.io"
		ref := e.Ref("evil/miner:latest")

		c, err := client.New(e.ContainerdAddress)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		envelopes, errs := c.EventService().Subscribe(ctx, `topic=="/images/create"`, `topic=="/images/delete"`)
		startContainerdGuard(b, e, WritePolicy(b, "", policyWithRunning(e, "enforce", "keep")))

		pulls := max(b.N, containerdBenchPulls)
		lat := make([]time.Duration, 0, pulls)
		b.ResetTimer()
		for i := range pulls {
			ctrPull(b, e, ns, ref)
			var created time.Time
			deadline := time.After(actDeadline)
			for deleted := false; !deleted; {
				select {
				case env := <-envelopes:
					if env.Namespace != ns || imageEventName(b, env.Event) != ref {
						continue
					}
					switch env.Topic {
					case "/images/create":
						created = env.Timestamp
					case "/images/delete":
						if created.IsZero() {
							b.Fatalf("pull %d: /images/delete of %s without /images/create", i, ref)
						}
						lat = append(lat, env.Timestamp.Sub(created))
						deleted = true
					}
				case err := <-errs:
					b.Fatalf("containerd events: %v", err)
				case <-deadline:
					b.Fatalf("pull %d: %s not deleted within %v", i, ref, actDeadline)
				}
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed())/float64(pulls), "ns/op")

		p50, p99 := percentile(lat, 50), percentile(lat, 99)
		b.ReportMetric(millis(p50), "p50-ms")
		b.ReportMetric(millis(p99), "p99-ms")
		b.Logf("%d pulls: pull-event-to-deletion p50 %v, p99 %v, max %v", len(lat), p50, p99, slices.Max(lat))
	})
}

// imageEventName is the image name an /images/ event carries.
func imageEventName(t testing.TB, ev typeurl.Any) string {
	t.Helper()
	v, err := typeurl.UnmarshalAny(ev)
	if err != nil {
		t.Fatalf("decoding a containerd event: %v", err)
	}
	switch ev := v.(type) {
	case *eventtypes.ImageCreate:
		return ev.Name
	case *eventtypes.ImageDelete:
		return ev.Name
	}
	return ""
}
