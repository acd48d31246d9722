package integration

// These tests check the environment itself: that the real runtimes the pullguard tests rely
// on pull, run and log as the tests expect.

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDockerPullFromLocalRegistry(t *testing.T) {
	e := RequireEnv(t)
	ref := e.Ref("approved/busybox:1.0")

	e.Docker(t, "pull", ref)

	img, ok := e.InspectImage(t, ref)
	if !ok {
		t.Fatalf("%s is not in dockerd after docker pull", ref)
	}
	if want := []string{ref}; !slices.Equal(img.RepoTags, want) {
		t.Errorf("RepoTags = %q, want %q", img.RepoTags, want)
	}
	if got := e.Docker(t, "run", "--rm", ref, "echo", "ok"); got != "ok" {
		t.Errorf("docker run %s echo ok printed %q", ref, got)
	}
}

// Later tests tell allowed from denied images by name and by ID, so the seeded names must map
// onto exactly two distinct images.
func TestSeededImages(t *testing.T) {
	e := RequireEnv(t)
	ids := map[string]string{}
	for _, name := range []string{"approved/busybox:1.0", "approved/busybox:1.1", "approved/busybox:latest",
		"myorg-base:1.0", "myorg/base:1.0", "library/nginx:1.25", "evil/miner:latest", "evil/miner:1.0"} {
		e.Docker(t, "pull", "--quiet", e.Ref(name))
		img, _ := e.InspectImage(t, e.Ref(name))
		ids[name] = img.ID
	}
	if ids["evil/miner:latest"] != ids["evil/miner:1.0"] {
		t.Errorf("evil/miner tags differ: %q", ids)
	}
	for name, id := range ids {
		if strings.HasPrefix(name, "evil/") {
			continue
		}
		if id != ids["approved/busybox:1.0"] {
			t.Errorf("%s has ID %s, approved/busybox:1.0 has %s", name, id, ids["approved/busybox:1.0"])
		}
		if id == ids["evil/miner:latest"] {
			t.Errorf("%s has the same ID as evil/miner: %s", name, id)
		}
	}
	if got := len(e.ImageIDs(t)); got != 2 {
		t.Errorf("dockerd holds %d images after pulling the seeded names, want 2", got)
	}
}

func TestContainerdPullFromLocalRegistry(t *testing.T) {
	e := RequireEnv(t)
	ref := e.Ref("approved/busybox:1.0")

	e.Ctr(t, "default", "images", "pull", "--plain-http", ref)

	if got := e.CtrImages(t, "default"); !slices.Contains(got, ref) {
		t.Errorf("ctr images ls = %q, want it to contain %s", got, ref)
	}
	// Docker keeps its own image store; the containerd pull must not show up there.
	if e.ImageExists(t, ref) {
		t.Errorf("%s appeared in dockerd after a containerd pull", ref)
	}
}

func TestJournaldStoresFields(t *testing.T) {
	RequireEnv(t)
	id := UniqueName(t)
	// logger --journald sends FIELD=value lines as one entry, as pullguard's journal.Send does:
	// custom fields, a repeated field and a value that is not UTF-8.
	cmd := exec.Command("logger", "--journald")
	cmd.Stdin = strings.NewReader("MESSAGE=hello from " + id + "\n" +
		"SYSLOG_IDENTIFIER=pullguard-test\n" +
		"PULLGUARD_TEST_ID=" + id + "\n" +
		"PULLGUARD_TEST_REPEATED=a\nPULLGUARD_TEST_REPEATED=b\n" +
		"PULLGUARD_TEST_BINARY=\xff\x01\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("logger --journald: %v\n%s", err, out)
	}

	entries := WaitJournal(t, 10*time.Second, "PULLGUARD_TEST_ID="+id, "SYSLOG_IDENTIFIER=pullguard-test")

	if len(entries) != 1 {
		t.Fatalf("got %d entries, want 1: %q", len(entries), entries)
	}
	want := map[string]string{
		"MESSAGE":                 "hello from " + id,
		"PULLGUARD_TEST_REPEATED": "a\nb",
		"PULLGUARD_TEST_BINARY":   "\xff\x01",
	}
	for field, value := range want {
		if got := entries[0][field]; got != value {
			t.Errorf("%s = %q, want %q", field, got, value)
		}
	}
}
