package integration

// End-to-end tests of nameless content under local-images: deny (issue 24): an image known
// only by its ID — what `docker load` of an archive without names leaves — has nothing an
// allowed repository could vouch for, and does not stay; allowed content does.

import (
	"strings"
	"testing"
)

// TestNamelessLoadDoesNotStay: the Docker guard removes a nameless load at its event, and one
// loaded while it was not running at its start-up reconcile; the allowed image stays.
func TestNamelessLoadDoesNotStay(t *testing.T) {
	tarball := loadableAs(t, RequireEnv(t).Ref("evil/miner:1.0")) // nameless
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

		after := namelessLoad(t, e, tarball)
		waitImageGone(t, e, after)
		d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=removed", "PULLGUARD_IMAGE_ID="+after, "PULLGUARD_EVENT=load")
		requireImage(t, e, approved, approvedID)
		if got := e.Docker(t, "run", "--rm", approved, "echo", "ok"); got != "ok" {
			t.Errorf("docker run %s printed %q", approved, got)
		}
	})
}
