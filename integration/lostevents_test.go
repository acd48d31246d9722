package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// TestDockerLostEventsWhileStopped: pullguard is stopped (SIGSTOP) while 1,500 disallowed
// names are tagged. dockerd drops events for a reader that does not keep up, so some never
// arrive; resumed, pullguard notices that it fell behind (its clock jumped, events arrive
// late) and reconciles at once: every name is gone within seconds, not at the 5-minute resync.
func TestDockerLostEventsWhileStopped(t *testing.T) {
	e := RequireEnv(t)
	approved := e.Ref("approved/busybox:1.0")
	g := startDockerGuard(t, e, WritePolicy(t, "", policyYAML(e, "enforce", false)))
	e.Docker(t, "pull", "-q", approved)
	id := imageID(t, e, approved)

	const n = 1500
	g.Pause(t)
	api := dockerAPI(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	var wg sync.WaitGroup
	work := make(chan string)
	errs := make(chan error, n)
	for range 8 {
		wg.Go(func() {
			for target := range work {
				if _, err := api.ImageTag(ctx, client.ImageTagOptions{Source: approved, Target: target}); err != nil {
					errs <- fmt.Errorf("tag %s: %w", target, err)
				}
			}
		})
	}
	for i := range n {
		work <- e.Ref(fmt.Sprintf("evil/lost:%d", i))
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("tagged %d disallowed names in %v while pullguard was stopped", n, time.Since(began).Round(time.Millisecond))
	if img, _ := e.InspectImage(t, id); len(img.RepoTags) < n {
		t.Fatalf("only %d names on the image: pullguard acted while stopped?", len(img.RepoTags))
	}

	// dockerd's own floor: removing one name of an image with this many
	// names rewrites its whole reference store.
	t0 := time.Now()
	if _, err := api.ImageRemove(ctx, e.Ref("evil/lost:0"), client.ImageRemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	perName := time.Since(t0)
	g.Signal(t, syscall.SIGCONT)
	resumed := time.Now()
	// It notices at once that it fell behind, and reconciles.
	behind := g.WaitEntry(t, actDeadline, "PULLGUARD_RUNTIME=docker", "PULLGUARD_TRIGGER=behind")
	t.Logf("%v after the resume: %s", time.Since(resumed).Round(time.Millisecond), behind["MESSAGE"])
	// Every name goes as fast as dockerd removes names: well within the
	// time dockerd itself needs for them, and never left to the resync.
	deadline := actDeadline + 2*time.Duration(n)*perName
	t.Logf("dockerd removes one of %d names in %v: allowing %v", n, perName.Round(time.Millisecond), deadline.Round(time.Second))
	Eventually(t, deadline, func() (bool, string) {
		img, _ := e.InspectImage(t, id)
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
	t.Logf("every disallowed name gone %v after the resume", time.Since(resumed).Round(time.Millisecond))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
