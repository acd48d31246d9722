package integration

// End-to-end tests of `pullguard daemon` and `pullguard scan` on a real dockerd (issue 4).
// Every outcome is read back through Docker's own API (the docker CLI) and journald
// (journalctl -o json), never from pullguard's output alone.

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"
)

// TestDockerRemovesDisallowedArrivals: every way an image or a container arrives (pull, tag,
// load, import, run) under a disallowed reference ends with it gone, while the allowed ones
// next to it stay. One daemon serves all subtests; each one acts through the event path (no
// reload, no reconnect happens here), which the journal entries' PULLGUARD_EVENT confirms.
func TestDockerRemovesDisallowedArrivals(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		evil, evilTag := e.Ref("evil/miner:latest"), e.Ref("evil/miner:1.0")
		approved := e.Ref("approved/busybox:1.0")

		// Tarballs for docker load, made while nothing guards dockerd.
		dir := t.TempDir()
		e.Docker(t, "pull", "-q", evilTag)
		evilID := imageID(t, e, evilTag)
		evilTar := filepath.Join(dir, "evil.tar")
		e.Docker(t, "save", "-o", evilTar, evilTag)
		e.Docker(t, "pull", "-q", e.Ref("approved/busybox:1.1"))
		okTar := filepath.Join(dir, "approved.tar")
		e.Docker(t, "save", "-o", okTar, e.Ref("approved/busybox:1.1"))
		e.Reset(t)
		rootfs := rootfsTar(t, UniqueName(t))

		// Names alone: this test is about disallowed names arriving; an allowed name on content
		// made here (the import below) is provenance_test.go's.
		g := startDockerGuard(t, e, WritePolicy(t, "", policyYAML(e, "enforce", false, "local-images: allow")))
		e.Docker(t, "pull", "-q", approved)
		approvedID := imageID(t, e, approved)

		// removed asserts the journal entry for what pullguard did to ref on event.
		removed := func(t *testing.T, ref, action string, events ...string) {
			t.Helper()
			entry := g.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+ref, "MESSAGE_ID="+msgActionTaken)
			if entry["PULLGUARD_ACTION"] != action {
				t.Errorf("PULLGUARD_ACTION = %q for %s, want %q", entry["PULLGUARD_ACTION"], ref, action)
			}
			if !slices.Contains(events, entry["PULLGUARD_EVENT"]) {
				t.Errorf("PULLGUARD_EVENT = %q for %s, want one of %q", entry["PULLGUARD_EVENT"], ref, events)
			}
		}

		t.Run("pull", func(t *testing.T) {
			e.Docker(t, "pull", "-q", evil)
			waitImageGone(t, e, evil)
			// One removal of the last name deletes the image too, a moment after the name:
			// dockerd untags, then deletes (two events), so the image is awaited, not checked
			// once.
			Eventually(t, actDeadline, func() (bool, string) {
				return !e.ImageExists(t, evilID), fmt.Sprintf("image %s is still in dockerd after its only name was removed", evilID)
			})
			removed(t, evil, "removed", "pull")
			requireImage(t, e, approved, approvedID)
		})

		t.Run("tag", func(t *testing.T) {
			okName, badName := e.Ref("approved/retagged:1"), e.Ref("evil/tagged:1")
			e.Docker(t, "tag", approved, okName)
			e.Docker(t, "tag", approved, badName)
			waitImageGone(t, e, badName)
			// Only the name goes: the image keeps its allowed names.
			removed(t, badName, "untagged", "tag")
			requireImage(t, e, okName, approvedID)
			requireImage(t, e, approved, approvedID)
		})

		t.Run("load", func(t *testing.T) {
			e.Docker(t, "load", "-q", "-i", okTar)
			e.Docker(t, "load", "-q", "-i", evilTar)
			waitImageGone(t, e, evilTag)
			removed(t, evilTag, "removed", "load", "tag")
			requireImage(t, e, e.Ref("approved/busybox:1.1"), approvedID)
		})

		t.Run("import", func(t *testing.T) {
			okName, badName := e.Ref("approved/imported:1"), e.Ref("evil/imported:1")
			e.Docker(t, "import", rootfs, okName)
			e.Docker(t, "import", rootfs, badName)
			waitImageGone(t, e, badName)
			removed(t, badName, "removed", "import", "tag")
			requireImage(t, e, okName, "")
		})

		t.Run("run", func(t *testing.T) {
			// Allowed: by name, and by the short ID of an image that has an allowed name.
			okByName := e.Docker(t, "run", "-d", "--stop-timeout", "1", approved, "sleep", "300")
			okByID := e.Docker(t, "run", "-d", "--stop-timeout", "1", approvedID[len("sha256:"):19], "sleep", "300")

			// An image with no name at all has no allowed reference: a container made from it by
			// ID is disallowed. pullguard removes it on its create event, often before docker run
			// gets to start it ("container is marked for removal"), or else once it runs.
			nameless := e.Docker(t, "import", rootfs)
			badName := UniqueName(t)
			_, runErr := e.DockerErr(t, "run", "-d", "--name", badName, "--stop-timeout", "1", nameless, "sleep", "300")
			t.Logf("docker run %s: %v (either outcome is fine)", nameless, runErr)
			waitContainerGone(t, e, badName)
			entry := g.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE_ID="+nameless, "MESSAGE_ID="+msgActionTaken)
			if entry["PULLGUARD_ACTION"] != "removed" || len(entry["PULLGUARD_CONTAINER_ID"]) != 64 {
				t.Errorf("container entry: PULLGUARD_ACTION=%q PULLGUARD_CONTAINER_ID=%q, want removed and a container ID",
					entry["PULLGUARD_ACTION"], entry["PULLGUARD_CONTAINER_ID"])
			}

			// By a disallowed name: docker run pulls it, and the image's removal races the
			// container's creation. Whichever wins, neither may be left.
			name := UniqueName(t) + "-byname"
			_, runErr = e.DockerErr(t, "run", "-d", "--name", name, "--stop-timeout", "1", evil, "sleep", "300")
			t.Logf("docker run %s: %v (either outcome is fine)", evil, runErr)
			waitContainerGone(t, e, name)
			waitImageGone(t, e, evil)

			for _, id := range []string{okByName, okByID} {
				if st := containerState(t, e, id); st != "running" {
					t.Errorf("allowed container %s is %q, want running", id, st)
				}
			}
		})

		if got := g.Entries(t, "PULLGUARD_IMAGE="+approved); len(got) > 0 {
			t.Errorf("pullguard logged %d entries about the allowed %s: %v", len(got), approved, got)
		}
	})
}

// TestDockerKeepsAllowedNameOfSharedImage: one image under an allowed name and disallowed
// ones loses only the disallowed names; its allowed names and its content (the same image
// ID, still runnable) stay.
func TestDockerKeepsAllowedNameOfSharedImage(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		approved, myorg := e.Ref("approved/busybox:1.0"), e.Ref("myorg/base:1.0")
		nginx, typo := e.Ref("library/nginx:1.25"), e.Ref("myorg-base:1.0")
		g := startDockerGuard(t, e, WritePolicy(t, "", policyYAML(e, "enforce", true)))

		e.Docker(t, "pull", "-q", approved)
		id := imageID(t, e, approved)
		for _, ref := range []string{nginx, typo, myorg} {
			e.Docker(t, "pull", "-q", ref)
		}

		want := []string{approved, myorg}
		slices.Sort(want)
		var img Image
		Eventually(t, actDeadline, func() (bool, string) {
			img, _ = e.InspectImage(t, id)
			got := slices.Sorted(slices.Values(img.RepoTags))
			return slices.Equal(got, want), fmt.Sprintf("image %s has names %q, want %q", id, got, want)
		})
		for _, d := range img.RepoDigests {
			if !strings.HasPrefix(d, e.Ref("approved/")) && !strings.HasPrefix(d, e.Ref("myorg/base@")) {
				t.Errorf("image %s kept the digest reference %s of a disallowed repository", id, d)
			}
		}
		for _, ref := range []string{nginx, typo} {
			entry := g.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+ref)
			if entry["PULLGUARD_ACTION"] != "untagged" || entry["PULLGUARD_IMAGE_ID"] != id {
				t.Errorf("%s: PULLGUARD_ACTION=%q PULLGUARD_IMAGE_ID=%q, want untagged and %s",
					ref, entry["PULLGUARD_ACTION"], entry["PULLGUARD_IMAGE_ID"], id)
			}
		}
		if got := e.Docker(t, "run", "--rm", approved, "echo", "content intact"); got != "content intact" {
			t.Errorf("docker run %s printed %q", approved, got)
		}
		requireImage(t, e, approved, id)
		requireImage(t, e, myorg, id)
	})
}

// TestDockerAuditModeRemovesNothing: in audit mode every disallowed arrival is logged as
// would-remove, and nothing is removed.
func TestDockerAuditModeRemovesNothing(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		evil, approved, badName := e.Ref("evil/miner:latest"), e.Ref("approved/busybox:1.0"), e.Ref("evil/tagged:1")
		g := startDockerGuard(t, e, WritePolicy(t, "", policyYAML(e, "audit", false)))

		e.Docker(t, "pull", "-q", approved)
		e.Docker(t, "pull", "-q", evil)
		e.Docker(t, "tag", approved, badName)
		cid := e.Docker(t, "run", "-d", "--stop-timeout", "1", evil, "sleep", "300")

		// Once the would-remove entries are there, pullguard has decided; then nothing may be gone.
		for _, match := range []string{"PULLGUARD_IMAGE=" + evil, "PULLGUARD_IMAGE=" + badName, "PULLGUARD_CONTAINER_ID=" + cid} {
			entry := g.WaitEntry(t, actDeadline, match, "PULLGUARD_ACTION=would-remove")
			requireFields(t, entry, map[string]string{"MESSAGE_ID": msgWouldAct, "PULLGUARD_MODE": "audit", "PRIORITY": "4"})
		}
		for _, ref := range []string{evil, badName, approved} {
			requireImage(t, e, ref, "")
		}
		if st := containerState(t, e, cid); st != "running" {
			t.Errorf("container %s of the disallowed image is %q in audit mode, want running", cid, st)
		}
		if acted := g.Entries(t, "MESSAGE_ID="+msgActionTaken); len(acted) > 0 {
			t.Errorf("audit mode logged %d actions taken: %v", len(acted), acted)
		}
	})
}

// TestDockerJournalFields reads a removal's journal entry back with journalctl -o json and
// checks every field SREs filter on, for an image and for a container.
func TestDockerJournalFields(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		evil := e.Ref("evil/miner:latest")
		e.Docker(t, "pull", "-q", evil)
		evilID := imageID(t, e, evil)
		e.Reset(t)
		yaml := policyYAML(e, "enforce", false)
		path := WritePolicy(t, "", yaml)
		hash := policyHash(t, path)
		g := startDockerGuard(t, e, path)

		loaded := g.WaitEntry(t, actDeadline, "MESSAGE_ID="+msgPolicyLoaded)
		requireFields(t, loaded, map[string]string{
			"PULLGUARD_POLICY_HASH": hash, "PULLGUARD_MODE": "enforce", "PRIORITY": "6",
			"SYSLOG_IDENTIFIER": "pullguard", "PULLGUARD_ALLOW_RULES": "1", "PULLGUARD_DENY_RULES": "1",
		})

		e.Docker(t, "pull", "-q", evil)
		entry := g.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+evil)
		requireFields(t, entry, map[string]string{
			"MESSAGE_ID":            msgActionTaken,
			"PRIORITY":              "4",
			"SYSLOG_IDENTIFIER":     "pullguard",
			"PULLGUARD_ACTION":      "removed",
			"PULLGUARD_IMAGE_ID":    evilID,
			"PULLGUARD_RUNTIME":     "docker",
			"PULLGUARD_EVENT":       "pull",
			"PULLGUARD_RULE":        fmt.Sprintf("%s:%d", path, lineOf(t, yaml, "evil/**")),
			"PULLGUARD_MODE":        "enforce",
			"PULLGUARD_POLICY_HASH": hash,
		})
		if !strings.Contains(entry["PULLGUARD_REASON"], "deny") {
			t.Errorf("PULLGUARD_REASON = %q, want it to name the deny rule", entry["PULLGUARD_REASON"])
		}
		if want := "removed docker image " + evil; !strings.HasPrefix(entry["MESSAGE"], want) {
			t.Errorf("MESSAGE = %q, want it to start with %q", entry["MESSAGE"], want)
		}
		if _, ok := entry["PULLGUARD_CONTAINER_ID"]; ok {
			t.Errorf("an image removal carries PULLGUARD_CONTAINER_ID=%q", entry["PULLGUARD_CONTAINER_ID"])
		}

		// A container of an image without any name: the default (no allow rule) decides.
		// docker create, not run: pullguard may remove the container before run could start it,
		// and create reliably prints its ID. pullguard is paused meanwhile: under local-images:
		// deny it removes the nameless image itself at its import event, before create could
		// use it.
		g.Pause(t)
		nameless := e.Docker(t, "import", rootfsTar(t, UniqueName(t)))
		cid := e.Docker(t, "create", "--stop-timeout", "1", nameless, "sleep", "300")
		g.Signal(t, syscall.SIGCONT)
		centry := g.WaitEntry(t, actDeadline, "PULLGUARD_CONTAINER_ID="+cid)
		requireFields(t, centry, map[string]string{
			"MESSAGE_ID":         msgActionTaken,
			"PRIORITY":           "4",
			"PULLGUARD_ACTION":   "removed",
			"PULLGUARD_IMAGE_ID": nameless,
			"PULLGUARD_RUNTIME":  "docker",
			"PULLGUARD_MODE":     "enforce",
		})
		if ev := centry["PULLGUARD_EVENT"]; ev != "create" {
			t.Errorf("container removal: PULLGUARD_EVENT = %q, want create", ev)
		}
		if centry["PULLGUARD_REASON"] == "" {
			t.Error("container removal: no PULLGUARD_REASON")
		}
		waitContainerGone(t, e, cid)
	})
}

// TestDockerReconcilesAfterDockerdRestart: dockerd dies (SIGKILL) under a running pullguard,
// and a disallowed image arrives that pullguard can never see an event for; pullguard stays
// up, reconnects, and its reconcile removes the image.
//
// What proves the reconcile path: pullguard is frozen (SIGSTOP) before dockerd #1 is killed.
// The image is pulled on dockerd #2, which pullguard never connects to; dockerd #2 is then
// killed as well, so the pull event dies with its in-memory event buffer. dockerd #3 starts
// with the image on disk and no event about it, so pullguard's resumed event stream (since
// its last event) cannot replay it: only the reconcile after reconnecting can find it, and
// the journal entry says so (PULLGUARD_EVENT=reconcile). Pulling on dockerd #2 while
// pullguard runs would not prove it: dockerd replays its buffered events to a subscriber
// that asks for them with since.
func TestDockerReconcilesAfterDockerdRestart(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		evil, approved, myorg := e.Ref("evil/miner:latest"), e.Ref("approved/busybox:1.0"), e.Ref("myorg/base:1.0")
		g := startDockerGuard(t, e, WritePolicy(t, "", policyYAML(e, "enforce", true)))
		e.Docker(t, "pull", "-q", approved)

		g.Pause(t)
		killDockerd(t, e)
		startDockerd(t, e) // #2
		e.Docker(t, "pull", "-q", evil)
		e.Docker(t, "pull", "-q", myorg)
		killDockerd(t, e)
		startDockerd(t, e) // #3
		if !e.ImageExists(t, evil) {
			t.Fatalf("%s did not survive the dockerd restart; the test proves nothing", evil)
		}

		g.Signal(t, syscall.SIGCONT)
		waitImageGone(t, e, evil)
		entry := g.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+evil)
		if entry["PULLGUARD_EVENT"] != "reconcile" || entry["PULLGUARD_ACTION"] != "removed" {
			t.Errorf("PULLGUARD_EVENT=%q PULLGUARD_ACTION=%q, want reconcile and removed", entry["PULLGUARD_EVENT"], entry["PULLGUARD_ACTION"])
		}
		requireImage(t, e, approved, "")
		requireImage(t, e, myorg, "")
		// What an SRE sees: the outage and the reconnection, by MESSAGE_ID.
		g.WaitEntry(t, actDeadline, "MESSAGE_ID="+msgRuntimeDisconnected)
		g.WaitEntries(t, actDeadline, 2, "MESSAGE_ID="+msgRuntimeConnected)

		// The new event stream works too: a pull now is removed by its event.
		evil2 := e.Ref("evil/miner:1.0")
		e.Docker(t, "pull", "-q", evil2)
		waitImageGone(t, e, evil2)
		if ev := g.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+evil2)["PULLGUARD_EVENT"]; ev != "pull" && ev != "reconcile" {
			t.Errorf("PULLGUARD_EVENT = %q for a pull after reconnecting", ev)
		}
		if !g.Running() {
			t.Fatalf("pullguard exited when dockerd went away; output:\n%s", g.Output())
		}
	})
}

// TestDockerTagBurst: 200 tags in a burst, half allowed and half not, all on one image: every
// disallowed one is removed, every allowed one kept, and each removal is logged.
func TestDockerTagBurst(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		approved := e.Ref("approved/busybox:1.0")
		g := startDockerGuard(t, e, WritePolicy(t, "", policyYAML(e, "enforce", false)))
		e.Docker(t, "pull", "-q", approved)
		id := imageID(t, e, approved)

		const n = 100
		want := []string{approved}
		var targets []string
		for i := range n {
			ok, bad := e.Ref(fmt.Sprintf("approved/burst:%d", i)), e.Ref(fmt.Sprintf("evil/burst:%d", i))
			targets = append(targets, ok, bad)
			want = append(want, ok)
		}
		slices.Sort(want)

		// Through the API, from 8 goroutines: a shell loop of docker tag would take seconds.
		api := dockerAPI(t, e)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		began := time.Now()
		var wg sync.WaitGroup
		work := make(chan string)
		errs := make(chan error, len(targets))
		for range 8 {
			wg.Go(func() {
				for target := range work {
					if _, err := api.ImageTag(ctx, client.ImageTagOptions{Source: approved, Target: target}); err != nil {
						errs <- fmt.Errorf("tag %s: %w", target, err)
					}
				}
			})
		}
		for _, target := range targets {
			work <- target
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		t.Logf("tagged %d names in %v", len(targets), time.Since(began).Round(time.Millisecond))

		Eventually(t, 3*actDeadline, func() (bool, string) {
			img, _ := e.InspectImage(t, id)
			got := slices.Sorted(slices.Values(img.RepoTags))
			var extra, missing []string
			for _, r := range got {
				if !slices.Contains(want, r) {
					extra = append(extra, r)
				}
			}
			for _, r := range want {
				if !slices.Contains(got, r) {
					missing = append(missing, r)
				}
			}
			return len(extra) == 0 && len(missing) == 0,
				fmt.Sprintf("%d disallowed names left %q, %d allowed names lost %q", len(extra), extra, len(missing), missing)
		})
		t.Logf("all %d disallowed names gone %v after the burst began", n, time.Since(began).Round(time.Millisecond))

		entries := g.WaitEntries(t, actDeadline, n, "PULLGUARD_ACTION=untagged")
		logged := map[string]bool{}
		for _, entry := range entries {
			logged[entry["PULLGUARD_IMAGE"]] = true
		}
		for i := range n {
			if ref := e.Ref(fmt.Sprintf("evil/burst:%d", i)); !logged[ref] {
				t.Errorf("no untagged entry for %s", ref)
			}
		}
		if len(entries) != n {
			t.Errorf("%d untagged entries, want %d (one per disallowed name)", len(entries), n)
		}
	})
}

// TestDaemonNotifiesSystemdAndStopsOnSIGTERM: sd_notify READY=1 comes once the first reconcile
// is done, RELOADING=1 with MONOTONIC_USEC and READY=1 frame a SIGHUP reload, STOPPING=1
// comes at SIGTERM, and the daemon exits cleanly within 5 s.
func TestDaemonNotifiesSystemdAndStopsOnSIGTERM(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		evil := e.Ref("evil/miner:latest")
		e.Docker(t, "pull", "-q", evil) // there before pullguard starts: only the reconcile sees it
		path := WritePolicy(t, "", policyYAML(e, "enforce", false))
		hash := policyHash(t, path)

		g, notify := startDockerGuardNoWait(t, e, path)
		ready := notify.WaitFor(t, readyDeadline, "READY=1")
		// READY=1 means the first reconcile has run: the image must be gone already.
		if e.ImageExists(t, evil) {
			t.Errorf("READY=1 was sent while %s was still there: before the first reconcile finished", evil)
		}
		if status := notifyFields(ready)["STATUS"]; !strings.Contains(status, "enforce mode") || !strings.Contains(status, hash) {
			t.Errorf("READY=1 STATUS=%q, want the mode and policy hash %s", status, hash)
		}
		g.WaitEntry(t, actDeadline, "MESSAGE_ID="+msgStarted)

		// SIGHUP: RELOADING=1 with the time of the request, then READY=1 once it is done.
		var before, after unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &before); err != nil {
			t.Fatal(err)
		}
		g.Signal(t, syscall.SIGHUP)
		reloading := notify.Next(t, notifyDeadline)
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &after); err != nil {
			t.Fatal(err)
		}
		f := notifyFields(reloading)
		if f["RELOADING"] != "1" {
			t.Fatalf("first message after SIGHUP = %q, want RELOADING=1", reloading)
		}
		usec, err := strconv.ParseInt(f["MONOTONIC_USEC"], 10, 64)
		if err != nil {
			t.Errorf("RELOADING=1 without a valid MONOTONIC_USEC: %q", reloading)
		} else if lo, hi := before.Nano()/1000, after.Nano()/1000; usec < lo || usec > hi {
			t.Errorf("MONOTONIC_USEC=%d is not between %d and %d (CLOCK_MONOTONIC around the SIGHUP)", usec, lo, hi)
		}
		if msg := notify.Next(t, notifyDeadline); notifyFields(msg)["READY"] != "1" {
			t.Errorf("message after RELOADING=1 = %q, want READY=1", msg)
		}
		g.WaitEntry(t, actDeadline, "PULLGUARD_TRIGGER=reload request", "PULLGUARD_POLICY_HASH="+hash)

		// SIGTERM: STOPPING=1, a clean exit within 5 s.
		began := time.Now()
		g.Signal(t, syscall.SIGTERM)
		if msg := notify.Next(t, notifyDeadline); notifyFields(msg)["STOPPING"] != "1" {
			t.Errorf("message after SIGTERM = %q, want STOPPING=1", msg)
		}
		select {
		case <-g.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("pullguard still running 5s after SIGTERM")
		}
		t.Logf("exited %v after SIGTERM", time.Since(began).Round(time.Millisecond))
		if g.err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0", g.err)
		}
		g.WaitEntry(t, actDeadline, "MESSAGE_ID="+msgStopping)
	})
}

// TestScan: `pullguard scan` lists every denied image name and container and exits 1 without
// changing anything; --enforce then removes them as the daemon would; a clean host exits 0.
func TestScan(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		approved, nginx, evil := e.Ref("approved/busybox:1.0"), e.Ref("library/nginx:1.25"), e.Ref("evil/miner:latest")
		for _, ref := range []string{approved, nginx, evil} {
			e.Docker(t, "pull", "-q", ref)
		}
		id := imageID(t, e, approved)
		badC := e.Docker(t, "run", "-d", "--stop-timeout", "1", evil, "sleep", "300")
		okC := e.Docker(t, "run", "-d", "--stop-timeout", "1", approved, "sleep", "300")
		path := WritePolicy(t, "", policyYAML(e, "enforce", false, "running: stop"))
		scan := []string{"scan", "--policy", path, "--docker-host", e.DockerHost}

		stdout, stderr, code := runPullguard(t, e, append(scan, "--output", "json")...)
		if code != 1 {
			t.Errorf("scan exit status %d, want 1 (denied things present); stderr:\n%s", code, stderr)
		}
		type finding struct{ Kind, Reference, ContainerID, Action string }
		var found []finding
		for line := range strings.Lines(stdout) {
			var f struct {
				Kind        string `json:"kind"`
				Reference   string `json:"reference"`
				ContainerID string `json:"container_id"`
				Action      string `json:"action"`
			}
			if err := json.Unmarshal([]byte(line), &f); err != nil {
				t.Fatalf("scan -o json line %q: %v", line, err)
			}
			found = append(found, finding{f.Kind, f.Reference, f.ContainerID, f.Action})
		}
		has := func(kind, ref, cid string) bool {
			return slices.ContainsFunc(found, func(f finding) bool {
				return f.Kind == kind && f.Reference == ref && (cid == "" || f.ContainerID == cid)
			})
		}
		for _, want := range []struct{ kind, ref, cid string }{
			{"image", nginx, ""}, {"image", evil, ""}, {"container", evil, badC},
		} {
			if !has(want.kind, want.ref, want.cid) {
				t.Errorf("scan does not list %s %s %s; it found %+v", want.kind, want.ref, want.cid, found)
			}
		}
		for _, f := range found {
			if f.Reference == approved || f.ContainerID == okC {
				t.Errorf("scan lists the allowed %+v", f)
			}
		}

		text, _, _ := runPullguard(t, e, scan...)
		for _, want := range []string{nginx, evil, badC[:12]} {
			if !strings.Contains(text, want) {
				t.Errorf("scan's text output does not mention %s:\n%s", want, text)
			}
		}

		// A scan without --enforce changes nothing.
		for _, ref := range []string{approved, nginx, evil} {
			requireImage(t, e, ref, "")
		}
		if st := containerState(t, e, badC); st != "running" {
			t.Errorf("scan without --enforce left container %s %q, want running", badC, st)
		}

		_, stderr, code = runPullguard(t, e, append(scan, "--enforce")...)
		if code != 1 {
			t.Errorf("scan --enforce exit status %d, want 1 (it found denied things); stderr:\n%s", code, stderr)
		}
		if st := containerState(t, e, badC); st != "" {
			t.Errorf("container %s of the disallowed image is still there (%s) after scan --enforce; stderr:\n%s", badC, st, stderr)
		}
		for _, ref := range []string{nginx, evil} {
			if e.ImageExists(t, ref) {
				t.Errorf("%s is still there after scan --enforce; stderr:\n%s", ref, stderr)
			}
		}
		requireImage(t, e, approved, id)
		if st := containerState(t, e, okC); st != "running" {
			t.Errorf("allowed container %s is %q after scan --enforce, want running", okC, st)
		}

		stdout, stderr, code = runPullguard(t, e, scan...)
		if code != 0 || strings.TrimSpace(stdout) != "" {
			t.Errorf("scan of a clean host: exit %d, output %q, want 0 and nothing; stderr:\n%s", code, stdout, stderr)
		}
	})
}
