package integration

// End-to-end tests of image mounts on Docker 29 (issue 24, item 5): `docker run --mount
// type=image,source=<a nameless load>,target=/x <allowed image>` puts content no allowed
// repository vouches for into a running container. The authorization plugin refuses the
// create; without it, the Docker guard removes the container at its create event and at
// reconcile. Docker 20.10 (API 1.41) has no image mounts.

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

// loadedID is the image ID `docker load` printed.
func loadedID(t testing.TB, out string) string {
	t.Helper()
	id := regexp.MustCompile(`sha256:[0-9a-f]{64}`).FindString(out)
	if id == "" {
		t.Fatalf("docker load printed no image ID:\n%s", out)
	}
	return id
}

// namelessLoad is an attacker's `docker load` of an archive without names (content of
// evil/miner:1.0): an image known only by its ID. It returns the ID.
func namelessLoad(t testing.TB, e *Env, tarball string) string {
	t.Helper()
	id := loadedID(t, e.Docker(t, "load", "-i", tarball))
	if img, ok := e.InspectImage(t, id); !ok || len(img.RepoTags) > 0 {
		t.Fatalf("the load is not nameless: %+v", img)
	}
	return id
}

// imageMountPolicy is the seeded images' policy in enforce mode with running: and local-images:
// set.
func imageMountPolicy(e *Env, running, local string) string {
	return policyYAML(e, "enforce", false, "default: deny", "running: "+running, "local-images: "+local)
}

// runMounting is `docker run -d --mount type=image,source=SOURCE,target=/mnt/x IMAGE sleep
// 300` through the Engine API (Debian's docker CLI speaks API 1.41, and image mounts need
// 1.48): it returns the container's ID ("" if it was not created) and the create's or the
// start's error.
func runMounting(t testing.TB, e *Env, image, source string) (string, error) {
	t.Helper()
	c := dockerAPI(t, e)
	ctx := context.Background()
	res, err := c.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, Cmd: []string{"sleep", "300"}},
		HostConfig: &container.HostConfig{Mounts: []mount.Mount{
			{Type: mount.TypeImage, Source: source, Target: "/mnt/x"},
		}},
	})
	if err != nil {
		return "", err
	}
	_, err = c.ContainerStart(ctx, res.ID, client.ContainerStartOptions{})
	return res.ID, err
}

// mustRunMounting is runMounting that fails the test on an error.
func mustRunMounting(t testing.TB, e *Env, image, source string) string {
	t.Helper()
	id, err := runMounting(t, e, image, source)
	if err != nil {
		t.Fatalf("running %s with %s mounted: %v", image, source, err)
	}
	return id
}

func TestImageMount(t *testing.T) {
	root := RequireEnv(t)
	tarball := loadableAs(t, root.Ref("evil/miner:1.0")) // nameless
	e := root.modernStack()
	t.Cleanup(func() { e.Reset(t) })
	approved := e.Ref("approved/busybox:1.0")

	// Under local-images: allow a nameless image stays (names alone are judged), so what stops
	// the mount is the judgement of the mount itself.
	t.Run("plugin refuses the create", func(t *testing.T) {
		removeImagesAtEnd(t, e)
		e.Docker(t, "pull", "-q", approved)
		d, plugin := startAuthzGuard(t, e, WritePolicy(t, "", imageMountPolicy(e, "keep", "allow")))
		id := namelessLoad(t, e, tarball)
		short := strings.TrimPrefix(id, "sha256:")[:12]
		for _, source := range []string{id, short} {
			_, err := runMounting(t, e, approved, source)
			requireRefused(t, err, plugin, "cannot mount image "+source+" at /mnt/x: ", "the image has no name, only an ID")
		}
		if out := e.Docker(t, "ps", "--all", "--quiet"); out != "" {
			t.Errorf("containers were created despite the refusal: %q", out)
		}
		d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=blocked", "PULLGUARD_HOOK=authz", "PULLGUARD_IMAGE_ID="+id)
		// An allowed image mounted into an allowed container runs.
		ctr := mustRunMounting(t, e, approved, approved)
		if st := containerState(t, e, ctr); st != "running" {
			t.Errorf("the container that mounts an allowed image is %q, want running", st)
		}
		requireImage(t, e, approved, "")
	})

	t.Run("guard removes the container at its create", func(t *testing.T) {
		removeImagesAtEnd(t, e)
		e.Docker(t, "pull", "-q", approved)
		d := startDockerGuard(t, e, WritePolicy(t, "", imageMountPolicy(e, "keep", "allow")))
		id := namelessLoad(t, e, tarball)
		ok := mustRunMounting(t, e, approved, approved)
		ctr, err := runMounting(t, e, approved, id)
		if ctr == "" {
			t.Fatalf("the create failed: %v", err)
		}
		waitContainerGone(t, e, ctr) // its start may have failed: removed in between
		entry := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=removed", "PULLGUARD_IMAGE_ID="+id)
		if entry["PULLGUARD_CONTAINER_ID"] == "" || !strings.Contains(entry["PULLGUARD_REASON"], "an image mount of the container, at /mnt/x") {
			t.Errorf("the removal does not say which container and mount: %v", entry)
		}
		if st := containerState(t, e, ok); st != "running" {
			t.Errorf("the container that mounts an allowed image is %q, want running", st)
		}
		requireImage(t, e, approved, "")
	})

	t.Run("guard removes it at reconcile, and the nameless image", func(t *testing.T) {
		removeImagesAtEnd(t, e)
		e.Docker(t, "pull", "-q", approved)
		// Made while pullguard was not running.
		id := namelessLoad(t, e, tarball)
		ctr := mustRunMounting(t, e, approved, id)
		ok := mustRunMounting(t, e, approved, approved)
		d := startDockerGuard(t, e, WritePolicy(t, "", imageMountPolicy(e, "stop", "deny")))
		waitContainerGone(t, e, ctr)
		waitImageGone(t, e, id)
		d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=stopped", "PULLGUARD_CONTAINER_ID="+ctr, "PULLGUARD_EVENT=reconcile")
		if st := containerState(t, e, ok); st != "running" {
			t.Errorf("the container that mounts an allowed image is %q, want running", st)
		}
		requireImage(t, e, approved, "")
	})
}
