package integration

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"golang.org/x/sync/errgroup"
)

// TestDockerLostEventsWhileStopped: pullguard is stopped (SIGSTOP) while 1,500 disallowed
// names are tagged. dockerd drops events for a reader that does not keep up, so some never
// arrive; resumed, pullguard notices that it fell behind (its clock jumped, events arrive
// late) and reconciles at once: every name is gone within seconds, not at the 5-minute resync.
//
// Seconds, not one: the names stay on an allowed image, so they go one request a name (the
// one call that removes every name of an image, a forced removal by ID, would take the
// allowed name too), and dockerd removes them at its own pace, 100 to 250 a second on a
// 2-core machine however many are asked for at once, its cost per name growing with the
// names the image has (BenchmarkDockerUntagConcurrency, BenchmarkDockerRemoveManyNames).
// So the test first measures that pace in the same run: the same names tagged and removed by
// the test itself, as many at once as pullguard removes them (its default workers), before
// pullguard starts, so that nothing else acts on dockerd meanwhile. pullguard is allowed
// twice that and a few seconds, and never as long as the resync.
func TestDockerLostEventsWhileStopped(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		approved := e.Ref("approved/busybox:1.0")
		e.Docker(t, "pull", "-q", approved)
		id := imageID(t, e, approved)
		api := dockerAPI(t, e)
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		const n, workers = 1500, 4 // workers: the daemon's default
		names := refsOf(e, "evil/lost:%d", 0, n)
		tagged := func() time.Duration {
			t0 := time.Now()
			tagAll(t, ctx, api, approved, names)
			if img, _ := e.InspectImage(t, id); len(img.RepoTags) < n {
				t.Fatalf("only %d names on the image: pullguard acted while stopped?", len(img.RepoTags))
			}
			return time.Since(t0)
		}

		// dockerd's own pace, the floor.
		tagging := tagged()
		t0 := time.Now()
		untagAll(t, ctx, api, names, workers)
		floor := time.Since(t0)
		t.Logf("with nothing watching, dockerd tags %d names 8 at a time in %v and removes them %d at a time in %v",
			n, tagging.Round(time.Millisecond), workers, floor.Round(time.Millisecond))

		g := startDockerGuard(t, e, WritePolicy(t, "", policyYAML(e, "enforce", false)))
		g.Pause(t)
		t.Logf("tagged %d disallowed names in %v while pullguard was stopped", n, tagged().Round(time.Millisecond))
		g.Signal(t, syscall.SIGCONT)
		resumed := time.Now()
		// It notices at once that it fell behind, and reconciles.
		behind := g.WaitEntry(t, actDeadline, "PULLGUARD_RUNTIME=docker", "PULLGUARD_TRIGGER=behind")
		t.Logf("%v after the resume: %s", time.Since(resumed).Round(time.Millisecond), behind["MESSAGE"])
		deadline := min(5*time.Second+2*floor, 4*time.Minute) // the resync is 5 minutes away
		Eventually(t, deadline, func() (bool, string) {
			// Through the API: a docker CLI process every poll would take CPU from
			// dockerd that its own time above did not have to share. A failed
			// inspection (Docker 29's "data changed during operation") polls again.
			res, _ := api.ImageInspect(ctx, id)
			img := Image{RepoTags: res.RepoTags}
			var left []string
			for _, r := range img.RepoTags {
				if strings.Contains(r, "/evil/lost:") {
					left = append(left, r)
				}
			}
			if len(left) > 5 {
				left = append(left[:5], "...")
			}
			return len(left) == 0 && contains(img.RepoTags, approved),
				fmt.Sprintf("disallowed names left: %q; names %d", left, len(img.RepoTags))
		})
		took := time.Since(resumed)
		t.Logf("every disallowed name gone %v after the resume: %.2f times dockerd's own time (allowed: %v)",
			took.Round(time.Millisecond), took.Seconds()/floor.Seconds(), deadline.Round(time.Millisecond))
	})
}

// TestDockerReconcileRemovesEveryNameOfAnImage: an image whose names are all disallowed, found
// by the start-up reconcile, loses them side by side and is deleted with the last. The journal
// has one entry a name, `untagged` for all but one, `removed` for the one whose removal deleted
// the image, and no `failed`: dockerd 20.10, asked to remove an image's last two names at once,
// fails the second request though its name is gone, so the guard removes the last name alone
// (removing all 60 side by side, 4 at a time, 20.10 failed one name in most of six runs).
func TestDockerReconcileRemovesEveryNameOfAnImage(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		api := dockerAPI(t, e)
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		const n = 60
		source := e.Ref("evil/allnames:0")
		id := importTiny(t, ctx, api, source, "every name of an image", "")
		names := refsOf(e, "evil/allnames:%d", 1, n-1)
		tagAll(t, ctx, api, source, names)

		g := startDockerGuard(t, e, WritePolicy(t, "", policyYAML(e, "enforce", false)))
		entries := g.WaitEntries(t, actDeadline, n, "PULLGUARD_RUNTIME=docker", "PULLGUARD_EVENT=reconcile")
		if _, err := api.ImageInspect(ctx, id); !cerrdefs.IsNotFound(err) {
			t.Errorf("the image is still there (%v)", err)
		}
		actions := map[string]int{}
		named := map[string]bool{}
		for _, entry := range entries {
			actions[entry["PULLGUARD_ACTION"]]++
			named[entry["PULLGUARD_IMAGE"]] = true
			if entry["PULLGUARD_ACTION"] == "failed" {
				t.Errorf("failed: %s (%s)", entry["PULLGUARD_IMAGE"], entry["PULLGUARD_ERROR"])
			}
		}
		if want := map[string]int{"untagged": n - 1, "removed": 1}; !maps.Equal(actions, want) {
			t.Errorf("journal entries by action: %v, want %v", actions, want)
		}
		for _, name := range append(names, source) {
			if !named[name] {
				t.Errorf("no journal entry for %s", name)
			}
		}
	})
}

// refsOf are n references in the environment's registry, format filled in with first,
// first+1, and so on.
func refsOf(e *Env, format string, first, n int) []string {
	refs := make([]string, n)
	for i := range refs {
		refs[i] = e.Ref(fmt.Sprintf(format, first+i))
	}
	return refs
}

// tagAll puts every name on source, 8 at a time, through the API (a shell loop of docker tag
// would take minutes).
func tagAll(t testing.TB, ctx context.Context, api *client.Client, source string, names []string) {
	t.Helper()
	sideBySide(t, names, 8, func(name string) error {
		_, err := api.ImageTag(ctx, client.ImageTagOptions{Source: source, Target: name})
		return err
	})
}

// untagAll removes every name, n at a time, one request a name (`docker rmi NAME`).
func untagAll(t testing.TB, ctx context.Context, api *client.Client, names []string, n int) {
	t.Helper()
	sideBySide(t, names, n, func(name string) error {
		_, err := api.ImageRemove(ctx, name, client.ImageRemoveOptions{})
		return err
	})
}

// sideBySide calls f for every name, n at a time, and fails t on the first error.
func sideBySide(t testing.TB, names []string, n int, f func(string) error) {
	t.Helper()
	var group errgroup.Group
	group.SetLimit(n)
	for _, name := range names {
		group.Go(func() error {
			if err := f(name); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	if err := group.Wait(); err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
