package integration

// signed-by rules enforced by the daemon, end to end, against signatures
// made by the real cosign CLI in a private registry of each test's own:
// the authorization plugin before the pull, the Docker guard (events and
// reconcile) and the containerd guard after it.

import (
	"strings"
	"testing"
	"time"
)

// The Docker guard keeps what a listed key signed and removes the rest by
// its repository digest; with the registry stopped it removes nothing and
// reports the image failed, and once the registry answers again the next
// resync removes what is unsigned.
func TestSignatureDockerGuard(t *testing.T) {
	ForEachDocker(t, testSignatureDockerGuard)
}

func testSignatureDockerGuard(t *testing.T, e *Env) {
	f := newSigFixtures(t, e)
	pol := f.policy(t)
	// Pulled before the guard runs (the plugin is off), then the registry goes away.
	for _, img := range []string{imgClassic, imgBundle, imgUnsigned, imgOtherKey} {
		e.Docker(t, "pull", "--quiet", f.ref(img))
	}
	// scan plans as the daemon does, with the same verification.
	out, stderr, code := runPullguard(t, e, "scan", "--policy", pol, "--docker-host", e.DockerHost, "--output", "json")
	if code != 1 || !strings.Contains(out, f.ref(imgUnsigned)) || !strings.Contains(out, f.ref(imgOtherKey)) ||
		strings.Contains(out, f.ref(imgClassic)) || strings.Contains(out, f.ref(imgBundle)) {
		t.Errorf("scan: exit %d, want 1 listing only the unsigned and the other key's image:\n%s%s", code, out, stderr)
	}
	f.reg.stop(t)
	d := startDockerGuard(t, e, pol, "--resync-interval", "3s")
	failed := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=failed", "PULLGUARD_SIGNATURE=unverifiable")
	if !strings.Contains(failed["PULLGUARD_ERROR"], "signature could not be verified") {
		t.Errorf("failed entry: %q", failed)
	}
	for _, img := range []string{imgClassic, imgBundle, imgUnsigned, imgOtherKey} {
		requireImage(t, e, f.ref(img), "")
	}
	if n := len(d.Entries(t, "PULLGUARD_ACTION=removed")) + len(d.Entries(t, "PULLGUARD_ACTION=untagged")); n > 0 {
		t.Fatalf("%d removals while the registry could not be reached", n)
	}

	// The registry is back: the resync removes the unsigned and the other key's image.
	f.reg.start(t)
	waitImageGone(t, e, f.ref(imgUnsigned))
	waitImageGone(t, e, f.ref(imgOtherKey))
	requireImage(t, e, f.ref(imgClassic), "")
	requireImage(t, e, f.ref(imgBundle), "")
	missing := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=removed", "PULLGUARD_IMAGE="+f.ref(imgUnsigned))
	if missing["PULLGUARD_SIGNATURE"] != "missing" {
		t.Errorf("entry for the unsigned image: %q", missing)
	}
	invalid := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=removed", "PULLGUARD_IMAGE="+f.ref(imgOtherKey))
	if invalid["PULLGUARD_SIGNATURE"] != "invalid" || !strings.Contains(invalid["PULLGUARD_REASON"], "by another key") {
		t.Errorf("entry for the other key's image: %q", invalid)
	}

	// Pulled while the guard runs: the event guard judges the digest pulled.
	e.Docker(t, "pull", "--quiet", f.ref(imgMoved)) // carries a signature for another digest
	e.Docker(t, "pull", "--quiet", f.ref(imgOpen))
	waitImageGone(t, e, f.ref(imgMoved))
	requireImage(t, e, f.ref(imgOpen), "")
	// A name given locally has no repository digest: no registry signature
	// can cover it, so it goes, and the signed name on the same image stays.
	// (Docker 29's containerd image store lists the content digest under
	// every name, so there it is verified in the new repository, where no
	// signature is.)
	local := f.reg.addr + "/signed/local:1"
	e.Docker(t, "tag", f.ref(imgClassic), local)
	waitImageGone(t, e, local)
	requireImage(t, e, f.ref(imgClassic), "")
	untagged := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=untagged", "PULLGUARD_IMAGE="+local)
	if why := untagged["PULLGUARD_REASON"]; untagged["PULLGUARD_SIGNATURE"] != "missing" ||
		!strings.Contains(why, "no repository digest") && !strings.Contains(why, "no signature for") {
		t.Errorf("entry for the local name: %q", untagged)
	}
	// A signed image keeps running.
	e.Docker(t, "create", "--name", "signed-"+UniqueName(t), f.ref(imgClassic), "true")
	time.Sleep(4 * time.Second) // one more resync
	requireImage(t, e, f.ref(imgClassic), "")
	if n := len(d.Entries(t, "PULLGUARD_IMAGE="+f.ref(imgClassic), "PULLGUARD_ACTION=removed")); n > 0 {
		t.Errorf("the signed image was removed %d times", n)
	}
}

// The authorization plugin verifies the digest a tag resolves to before
// the pull: a signed image is pulled, an unsigned one is refused saying
// why, and with the registry stopped the pull is refused for want of proof.
func TestSignatureAuthzPull(t *testing.T) {
	ForEachDocker(t, testSignatureAuthzPull)
}

func testSignatureAuthzPull(t *testing.T, e *Env) {
	f := newSigFixtures(t, e)
	d, plugin := startAuthzGuard(t, e, f.policy(t))

	e.Docker(t, "pull", "--quiet", f.ref(imgClassic))
	requireImage(t, e, f.ref(imgClassic), "")
	_, err := e.DockerErr(t, "pull", f.ref(imgUnsigned))
	// The refusal names the digest the tag resolved to.
	requireRefused(t, err, plugin, deniedBy(plugin, f.ref(imgUnsigned)+"@"+f.digests[imgUnsigned]), "no signature for "+f.digests[imgUnsigned])
	if e.ImageExists(t, f.ref(imgUnsigned)) {
		t.Errorf("%s landed despite the refusal", f.ref(imgUnsigned))
	}
	blocked := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=blocked", "PULLGUARD_EVENT=authz")
	if blocked["PULLGUARD_SIGNATURE"] != "missing" {
		t.Errorf("blocked entry: %q", blocked)
	}
	// The Docker guard runs beside the plugin: the signed image stays.
	time.Sleep(2 * time.Second)
	requireImage(t, e, f.ref(imgClassic), "")

	f.reg.stop(t)
	_, err = e.DockerErr(t, "pull", f.ref(imgBundle))
	requireRefused(t, err, plugin, deniedBy(plugin, f.ref(imgBundle)), "cannot resolve "+f.ref(imgBundle)+" at the registry")
	d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=blocked", "PULLGUARD_SIGNATURE=unverifiable")
}

// The containerd guard judges each record's target digest: an unsigned
// record is deleted, a signed one stays; with the registry stopped nothing
// is deleted and the failure is reported.
func TestSignatureContainerdGuard(t *testing.T) {
	ForEachContainerd(t, testSignatureContainerdGuard)
}

func testSignatureContainerdGuard(t *testing.T, e *Env) {
	f := newSigFixtures(t, e)
	const ns = "default"
	d := startContainerdGuard(t, e, f.policy(t), "--resync-interval", "3s")
	ctrPull(t, e, ns, f.ref(imgClassic))
	ctrPull(t, e, ns, f.ref(imgUnsigned))
	waitCtrImageGone(t, e, ns, f.ref(imgUnsigned))
	removed := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=removed", "PULLGUARD_RUNTIME=containerd")
	if removed["PULLGUARD_SIGNATURE"] != "missing" {
		t.Errorf("removed entry: %q", removed)
	}

	// Pulled, then the registry goes away before the guard can verify it
	// again (a new daemon, so nothing is cached).
	ctrPull(t, e, ns, f.ref(imgOtherKey))
	waitCtrImageGone(t, e, ns, f.ref(imgOtherKey))
	if err := d.Stop(t); err != nil {
		t.Fatal(err)
	}
	ctrPull(t, e, ns, f.ref(imgMoved))
	f.reg.stop(t)
	d = startContainerdGuard(t, e, f.policy(t), "--resync-interval", "3s")
	d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=failed", "PULLGUARD_SIGNATURE=unverifiable")
	imgs := e.CtrImages(t, ns)
	for _, img := range []string{imgClassic, imgMoved} {
		if !strings.Contains(strings.Join(imgs, " "), f.ref(img)) {
			t.Errorf("%s deleted while the registry could not be reached: %q", img, imgs)
		}
	}
	f.reg.start(t)
	waitCtrImageGone(t, e, ns, f.ref(imgMoved))
	if imgs := e.CtrImages(t, ns); !strings.Contains(strings.Join(imgs, " "), f.ref(imgClassic)) {
		t.Errorf("the signed record is gone: %q", imgs)
	}
}
