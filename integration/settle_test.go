package integration

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// TestReloadHalfWrittenPolicyDestroysNothing: a policy written in place in two steps a second
// apart. The first half alone (mode: enforce, default: deny) is valid and loads; the removal of
// the approved image it would cause is held (one `held` entry) until the file has settled, and
// by then the second half allows it again: nothing approved is removed. A disallowed image that
// the previous policy did not allow either is removed at once meanwhile.
func TestReloadHalfWrittenPolicyDestroysNothing(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		approved := e.Ref("approved/busybox:1.0")
		dir := t.TempDir()
		path := WritePolicy(t, dir, policyWithRunning(e, "enforce", "keep"))
		g := startDockerGuard(t, e, path)
		e.Docker(t, "pull", "-q", approved)
		id := imageID(t, e, approved)

		// In place, as `printf ... > policy.yaml; sleep 1; printf ... >> policy.yaml` does.
		if err := os.WriteFile(path, []byte("mode: enforce\ndefault: deny\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		g.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=held", "PULLGUARD_RUNTIME=docker")
		// Meanwhile a new arrival that the previous policy denied too goes at once.
		evil := e.Ref("evil/miner:1.0")
		e.Docker(t, "pull", "-q", evil)
		waitImageGone(t, e, evil)
		time.Sleep(time.Second)
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(f, "allow:\n  - image: %s/approved/**\n", e.Registry); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		g.WaitEntries(t, actDeadline, 3, "MESSAGE_ID="+msgPolicyLoaded) // start, first half, whole

		// Past the settle period, the held removal was decided again under the whole policy.
		time.Sleep(4 * time.Second)
		requireImage(t, e, approved, id)
		if en := g.Entries(t, "PULLGUARD_IMAGE="+approved, "MESSAGE_ID="+msgActionTaken); len(en) > 0 {
			t.Errorf("the approved image was acted on: %v", en[0]["MESSAGE"])
		}
	})
}
