package integration

// End-to-end tests of nameless content under local-images: deny (issue 24): an image known
// only by its ID — what `docker load` of an archive without names leaves — has nothing an
// allowed repository could vouch for, and does not stay; allowed content does.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNamelessLoadDoesNotStay: the Docker guard removes a nameless load at its event, and one
// loaded while it was not running at its start-up reconcile; the allowed image stays.
func TestNamelessLoadDoesNotStay(t *testing.T) {
	// Two nameless archives of different content: the journal writes one entry for repeats of
	// the same removal.
	root := RequireEnv(t)
	tarball := loadableAs(t, root.Ref("evil/miner:1.0"))
	other := loadableAs(t, root.Ref("k8s/pause:3.10"))
	ForEachDocker(t, func(t *testing.T, e *Env) {
		removeImagesAtEnd(t, e)
		approved := e.Ref("approved/busybox:1.0")
		e.Docker(t, "pull", "-q", approved)
		approvedID := imageID(t, e, approved)
		before := namelessLoad(t, e, tarball)
		d := startDockerGuard(t, e, WritePolicy(t, "", provenancePolicy(e, "deny")))
		waitImageGone(t, e, before)
		entry := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=removed", "PULLGUARD_IMAGE_ID="+before, "PULLGUARD_EVENT=reconcile")
		if !strings.Contains(entry["PULLGUARD_REASON"], "no name") {
			t.Errorf("PULLGUARD_REASON = %q, want it to say the image has no name", entry["PULLGUARD_REASON"])
		}

		// The guard may remove it before docker load returns: not inspected.
		after := loadedID(t, e.Docker(t, "load", "-i", other))
		waitImageGone(t, e, after)
		d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=removed", "PULLGUARD_IMAGE_ID="+after, "PULLGUARD_EVENT=load")
		requireImage(t, e, approved, approvedID)
		if got := e.Docker(t, "run", "--rm", approved, "echo", "ok"); got != "ok" {
			t.Errorf("docker run %s printed %q", approved, got)
		}
	})
}

var buildLeasedPull = sync.OnceValues(func() (string, error) { return buildTestClient("leasedpull") })

// leasedPull is what internal/leasedpull prints.
type leasedPull struct{ Lease, Target, Chain string }

// runLeasedPull pulls ref into the namespace under a lease of the client's own.
func runLeasedPull(t testing.TB, e *Env, ns, ref string, extra ...string) leasedPull {
	t.Helper()
	bin, err := buildLeasedPull()
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.run(bin, append([]string{"-address", e.ContainerdAddress, "-namespace", ns, "-pull", ref}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	var res leasedPull
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Lease == "" || res.Target == "" {
		t.Fatalf("leasedpull printed %q: %v", out, err)
	}
	return res
}

// ctrColumn is the first column of a ctr listing, without its header.
func ctrColumn(t testing.TB, e *Env, ns string, args ...string) []string {
	t.Helper()
	var out []string
	for i, line := range strings.Split(e.Ctr(t, ns, args...), "\n") {
		if f := strings.Fields(line); i > 0 && len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return out
}

// TestLeasedPullDoesNotStay: a client pulls a disallowed image under a lease of its own
// (with and without containerd.io/gc.expire); the guard deletes the record, and then the
// lease's hold on the image, so its content and snapshots go. An allowed image pulled the same
// way, and one pulled with ctr, keep everything.
func TestLeasedPullDoesNotStay(t *testing.T) {
	ForEachContainerd(t, func(t *testing.T, e *Env) {
		const ns = "default"
		approved, evil := e.Ref("approved/busybox:1.0"), e.Ref("evil/miner:1.0")
		d := startContainerdGuard(t, e, WritePolicy(t, "", provenancePolicy(e, "deny")), "--resync-interval", "5s")
		ctrPull(t, e, ns, e.Ref("approved/busybox:1.1"))
		kept := runLeasedPull(t, e, ns, approved)
		attacks := []leasedPull{runLeasedPull(t, e, ns, evil), runLeasedPull(t, e, "k8s.io", evil, "-expire", "24h")}
		for i, a := range attacks {
			ans := []string{ns, "k8s.io"}[i]
			waitCtrImageGone(t, e, ans, evil)
			Eventually(t, 3*time.Minute, func() (bool, string) {
				content := ctrColumn(t, e, ans, "content", "ls")
				snaps := ctrColumn(t, e, ans, "snapshots", "ls")
				lss := ctrColumn(t, e, ans, "leases", "ls")
				return !slices.Contains(content, a.Target) && !slices.Contains(snaps, a.Chain) && !slices.Contains(lss, a.Lease),
					fmt.Sprintf("namespace %s still holds the leased pull of %s: manifest %v, snapshot %v, lease %v",
						ans, evil, slices.Contains(content, a.Target), slices.Contains(snaps, a.Chain), slices.Contains(lss, a.Lease))
			})
			// The record's deletion is an entry of its own; the lease's release names the lease.
			Eventually(t, actDeadline, func() (bool, string) {
				entries := d.Entries(t, "PULLGUARD_ACTION=removed", "PULLGUARD_IMAGE_ID="+a.Target, "PULLGUARD_NAMESPACE="+ans)
				return slices.ContainsFunc(entries, func(en map[string]string) bool {
					return strings.Contains(en["PULLGUARD_REASON"], "lease "+a.Lease)
				}), "no journal entry says the lease " + a.Lease + " was released:\n" + describeEntries(entries)
			})
		}
		// Allowed content stays: the records, their content and snapshots, the allowed lease.
		requireCtrImages(t, e, ns, approved, e.Ref("approved/busybox:1.1"))
		if !slices.Contains(ctrColumn(t, e, ns, "leases", "ls"), kept.Lease) {
			t.Errorf("the lease of the allowed pull of %s was deleted", approved)
		}
		if !slices.Contains(ctrColumn(t, e, ns, "content", "ls"), kept.Target) || !slices.Contains(ctrColumn(t, e, ns, "snapshots", "ls"), kept.Chain) {
			t.Errorf("content or snapshots of the allowed %s were removed", approved)
		}
		if out := e.Ctr(t, ns, "run", "--rm", approved, ctrContainerID(), "echo", "ok"); out != "ok" {
			t.Errorf("ctr run %s printed %q", approved, out)
		}
	})
}
