package integration

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// NRI (issue 25): pullguard refuses a CRI container of a disallowed image before containerd
// creates it, on containerd 2.4.2's NRI socket (each test environment's own, see testenv.sh).

// nriSocket is the NRI socket of the containerd 2.4.2 e runs on (testenv.sh: RUN/NAME.nri.sock
// beside RUN/NAME.sock).
func nriSocket(e *Env) string {
	return strings.TrimSuffix(e.ContainerdAddress, ".sock") + ".nri.sock"
}

// startNRIGuard starts pullguard on e's containerd with NRI. The event guard watches one
// namespace nothing uses, so that what happens in k8s.io is NRI's doing alone (NRI judges CRI's
// containers whatever --containerd-namespaces says).
func startNRIGuard(t testing.TB, e *Env, policyPath string, extra ...string) *Pullguard {
	t.Helper()
	d := startContainerdGuard(t, e, policyPath, append([]string{"--containerd-namespaces", "pg-nri-unused",
		"--nri-socket", nriSocket(e)}, extra...)...)
	Eventually(t, readyDeadline, func() (bool, string) {
		for _, entry := range d.Entries(t, "MESSAGE_ID="+msgRuntimeConnected, "PULLGUARD_RUNTIME=containerd") {
			if strings.HasPrefix(entry["MESSAGE"], "NRI: registered") {
				return true, ""
			}
		}
		return false, "pullguard did not register with NRI"
	})
	return d
}

// nriPolicy allows the pod sandbox image and approved/**, under local-images: deny: a name
// proves nothing, the registry is asked whether it served the content.
func nriPolicy(e *Env, mode string, extra ...string) string {
	p := fmt.Sprintf("mode: %s\ndefault: deny\nlocal-images: deny\nallow:\n  - image: %s/k8s/pause\n  - image: %s/approved/**\n",
		mode, e.Registry, e.Registry)
	for _, line := range extra {
		p += line + "\n"
	}
	return p
}

// startNRIWithImported imports evil content as approved/imported:1 into k8s.io of the
// containerd 2.4.2 stack and starts pullguard with NRI on it, in mode.
func startNRIWithImported(t testing.TB, mode string) (e *Env, d *Pullguard, imported string) {
	t.Helper()
	e = requireModern(t)
	imported = e.Ref("approved/imported:1")
	importEvilAsApproved(t, e, imported)
	return e, startNRIGuard(t, e, WritePolicy(t, "", nriPolicy(e, mode))), imported
}

// importEvilAsApproved imports, with ctr, evil/miner's content under the allowed name ref into
// namespace k8s.io of e's containerd: an allowed name whose content never came from an allowed
// repository.
func importEvilAsApproved(t testing.TB, e *Env, ref string) {
	t.Helper()
	evil := e.Ref("evil/miner:1.0")
	theEnv.Docker(t, "pull", "-q", evil)
	tarball := saveAs(t, theEnv, evil, ref)
	theEnv.Docker(t, "rmi", evil)
	e.Ctr(t, "k8s.io", "images", "import", "--all-platforms", tarball)
}

// crictlCreate starts a pod for image (pulled by CRI first when pull is set) and asks CRI to
// create its container; it returns the container ID, or crictl's error.
func crictlCreate(t testing.TB, e *Env, image string, pull bool) (string, error) {
	t.Helper()
	ctrJSON, podJSON := criPod(t, image)
	pod := e.Crictl(t, "runp", podJSON)
	if pull {
		e.Crictl(t, "pull", image)
	}
	out, err := e.CrictlErr(t, "create", pod, ctrJSON, podJSON)
	return strings.TrimSpace(out), err
}

// TestNRIRefusesDisallowedContainer: evil content imported into k8s.io under an approved name
// is refused at `crictl create` with pullguard's reason, and journaled as blocked by NRI; an
// image pulled from the approved repository is created and starts.
func TestNRIRefusesDisallowedContainer(t *testing.T) {
	e, d, imported := startNRIWithImported(t, "enforce")
	out, err := crictlCreate(t, e, imported, false)
	if err == nil {
		t.Fatalf("crictl create of %s (evil content under an approved name) succeeded: %s", imported, out)
	}
	t.Logf("crictl create: %v", err)
	for _, want := range []string{"pullguard: ", imported, "is not allowed", reasonLocalContent} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("crictl create failed without %q in its error: %v", want, err)
		}
	}
	entry := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=blocked", "PULLGUARD_EVENT=nri")
	requireFields(t, entry, map[string]string{
		"MESSAGE_ID":        msgBlocked,
		"PULLGUARD_HOOK":    "nri",
		"PULLGUARD_RUNTIME": "containerd",
		"PULLGUARD_IMAGE":   imported,
		"PULLGUARD_MODE":    "enforce",
	})
	if !strings.Contains(entry["PULLGUARD_REASON"], reasonLocalContent) {
		t.Errorf("PULLGUARD_REASON = %q, want %q", entry["PULLGUARD_REASON"], reasonLocalContent)
	}

	allowed := e.Ref("approved/busybox:1.0")
	id, err := crictlCreate(t, e, allowed, true)
	if err != nil {
		t.Fatalf("crictl create of the allowed %s: %v", allowed, err)
	}
	e.Crictl(t, "start", id)
	if n := len(d.Entries(t, "PULLGUARD_EVENT=nri", "PULLGUARD_IMAGE="+allowed)); n > 0 {
		t.Errorf("pullguard journaled %d entries about the allowed %s", n, allowed)
	}
}

// TestNRIAuditMode: in audit mode the same container is created and starts, and pullguard
// journals that it would have blocked it.
func TestNRIAuditMode(t *testing.T) {
	e, d, imported := startNRIWithImported(t, "audit")
	id, err := crictlCreate(t, e, imported, false)
	if err != nil {
		t.Fatalf("crictl create in audit mode: %v", err)
	}
	e.Crictl(t, "start", id)
	entry := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=would-block", "PULLGUARD_EVENT=nri")
	requireFields(t, entry, map[string]string{
		"PULLGUARD_HOOK":    "nri",
		"PULLGUARD_RUNTIME": "containerd",
		"PULLGUARD_IMAGE":   imported,
		"PULLGUARD_MODE":    "audit",
	})
}

// TestNRIReloadDenies: a policy reload that newly denies an image refuses its next container;
// the metrics count the refusal and show the NRI connection.
func TestNRIReloadDenies(t *testing.T) {
	e := requireModern(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	d := startNRIGuard(t, e, WritePolicy(t, dir, nriPolicy(e, "enforce")), "--metrics-listen", addr)
	ref := e.Ref("approved/busybox:1.0")
	if _, err := crictlCreate(t, e, ref, true); err != nil {
		t.Fatalf("crictl create of the allowed %s: %v", ref, err)
	}

	WritePolicy(t, dir, nriPolicy(e, "enforce", fmt.Sprintf("deny:\n  - image: %s/approved/busybox", e.Registry)))
	d.WaitEntries(t, actDeadline, 2, "MESSAGE_ID="+msgPolicyLoaded)
	out, err := crictlCreate(t, e, ref, false)
	if err == nil {
		t.Fatalf("crictl create of %s after the reload that denies it succeeded: %s", ref, out)
	}
	if !strings.Contains(err.Error(), "pullguard: ") || !strings.Contains(err.Error(), "is not allowed") {
		t.Errorf("crictl create failed without pullguard's reason: %v", err)
	}
	d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=blocked", "PULLGUARD_EVENT=nri", "PULLGUARD_IMAGE="+ref)
	waitSamples(t, "after the refusal", actDeadline, func() samples { return parseSamples(t, scrape(t, "http://"+addr+"/metrics")) },
		map[string]float64{
			`pullguard_actions_total{action="blocked",runtime="containerd"}`: 1,
			`pullguard_runtime_connected{runtime="containerd-nri"}`:          1,
		})
}

// TestNRIRequiredPlugin: with pullguard in containerd's required_plugins, no container is
// created while pullguard is stopped; once it runs again (containerd not restarted), an allowed
// one is. When containerd restarts, pullguard registers again on its own.
func TestNRIRequiredPlugin(t *testing.T) {
	e := requireModern(t)
	name := "c2-nrireq"
	dir := e.Path(name)
	dropIn := fmt.Sprintf("version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = %q\n"+
		"[plugins.\"io.containerd.nri.v1.nri\".default_validator]\n  enable = true\n  required_plugins = [\"pullguard\"]\n",
		filepath.Join(dir, "certs.d"))
	x, _ := startExtraContainerd2(t, e, name, dropIn)
	t.Cleanup(func() { x.Crictl(t, "rmp", "--all", "--force") })
	ref := e.Ref("approved/busybox:1.0")
	policyPath := WritePolicy(t, "", nriPolicy(e, "enforce"))

	d := startNRIGuard(t, x, policyPath)
	if _, err := crictlCreate(t, x, ref, true); err != nil {
		t.Fatalf("crictl create of the allowed %s with pullguard connected: %v", ref, err)
	}

	if err := d.Stop(t); err != nil {
		t.Fatalf("stopping pullguard: %v", err)
	}
	out, err := crictlCreate(t, x, ref, false)
	if err == nil {
		t.Fatalf("crictl create succeeded with pullguard stopped: %s", out)
	}
	// crictl's log quotes the message again: \" around the name.
	if !regexp.MustCompile(`required plugin \\?"pullguard\\?" not present`).MatchString(err.Error()) {
		t.Errorf("crictl create failed for another reason than the missing plugin: %v", err)
	}

	d = startNRIGuard(t, x, policyPath)
	if _, err := crictlCreate(t, x, ref, false); err != nil {
		t.Fatalf("crictl create of the allowed %s with pullguard running again: %v", ref, err)
	}

	// containerd restarts: pullguard registers again without being restarted.
	for _, step := range []string{"down-containerd2", "up-containerd2"} {
		if out, err := testenv(step, e.Dir, name); err != nil {
			t.Fatalf("testenv.sh %s: %v\n%s", step, err, out)
		}
	}
	d.WaitEntry(t, actDeadline, "MESSAGE_ID="+msgRuntimeDisconnected, "PULLGUARD_RUNTIME=containerd")
	Eventually(t, actDeadline, func() (bool, string) {
		_, err := crictlCreate(t, x, ref, false)
		return err == nil, fmt.Sprintf("crictl create after containerd restarted: %v", err)
	})
}

// TestNRIAfterLocalPullFallback: with registry.mirrors set, CRI pulls through its local-pull
// fallback, which runs no image verifier, so a disallowed image arrives though pullguard's
// verifier is installed; its container still cannot be created.
func TestNRIAfterLocalPullFallback(t *testing.T) {
	e := requireModern(t)
	policyPath := WritePolicy(t, "", nriPolicy(e, "enforce"))
	mirrors := fmt.Sprintf("version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry.mirrors.%q]\n  endpoint = [%q]\n",
		e.Registry, "http://"+e.Registry)
	x, dir := startExtraContainerd2(t, e, "c2-nrimirror", mirrors)
	t.Cleanup(func() { x.Crictl(t, "rmp", "--all", "--force") })
	installVerifier(t, dir, policyPath)
	evil := e.Ref("evil/miner:latest")
	if _, err := x.CrictlErr(t, "pull", evil); err != nil {
		t.Fatalf("with registry.mirrors, crictl pull %s was refused, so the fallback did not skip the verifier: %v", evil, err)
	}

	d := startNRIGuard(t, x, policyPath)
	out, err := crictlCreate(t, x, evil, false)
	if err == nil {
		t.Fatalf("crictl create of %s, pulled past the verifier, succeeded: %s", evil, out)
	}
	if !strings.Contains(err.Error(), "pullguard: "+evil) || !strings.Contains(err.Error(), "is not allowed") {
		t.Errorf("crictl create failed without pullguard's reason: %v", err)
	}
	d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=blocked", "PULLGUARD_EVENT=nri", "PULLGUARD_IMAGE="+evil)
}
