package integration

// End-to-end tests of issue 16 on the real containerd 2.4.2: pullguard's verifier inside
// containerd's image-verifier plugin (refusing ctr and CRI pulls before any content is
// fetched), CRI pods as the kubelet makes them, and the warning when CRI falls back to local
// pulls that skip verifiers.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// requireModern returns the environment's containerd 2.4.2 / Docker 29 stack, reset when the
// test ends.
func requireModern(t testing.TB) *Env {
	t.Helper()
	if theEnv == nil {
		t.Skip(skipReason)
	}
	e := theEnv.modernStack()
	t.Cleanup(func() { e.Reset(t) })
	return e
}

// verifierScript is the documented wrapper, with the policy path spelled out: containerd runs
// verifiers with its own environment, not the test's.
func verifierScript(t testing.TB, policyPath string) string {
	return fmt.Sprintf("#!/bin/sh\nPULLGUARD_POLICY=%s exec %s verify-image \"$@\"\n", policyPath, BuildPullguard(t))
}

// installVerifier puts pullguard's wrapper, reading policyPath, into the image-verifier
// directory of the containerd 2.4.2 whose config lives in dir (DIR/c2 for the main one), and
// removes it when the test ends. containerd lists the directory on every pull: no restart.
func installVerifier(t testing.TB, dir, policyPath string) {
	t.Helper()
	path := filepath.Join(dir, "verifiers", "pullguard")
	if err := os.WriteFile(path, []byte(verifierScript(t, policyPath)), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
}

// registryImage is what the registry holds for repo:tag: the manifest digest and every blob
// (config and layers) it names.
func registryImage(t testing.TB, e *Env, repo, tag string) (manifest string, blobs []string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v2/%s/manifests/%s", e.Registry, repo, tag), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Config struct{ Digest string }
		Layers []struct{ Digest string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest of %s:%s: %v (%s)", repo, tag, err, resp.Status)
	}
	blobs = append(blobs, m.Config.Digest)
	for _, l := range m.Layers {
		blobs = append(blobs, l.Digest)
	}
	return resp.Header.Get("Docker-Content-Digest"), blobs
}

// contentDigests lists the digests in the content store of the namespace.
func contentDigests(t testing.TB, e *Env, ns string) []string {
	t.Helper()
	return sortedFields(e.Ctr(t, ns, "content", "ls", "--quiet"))
}

// requireNoContent fails the test if any of digests is in the namespace's content store.
func requireNoContent(t testing.TB, e *Env, ns string, digests ...string) {
	t.Helper()
	have := contentDigests(t, e, ns)
	for _, d := range digests {
		if slices.Contains(have, d) {
			t.Errorf("%s is in the content store of namespace %s after a refused pull", d, ns)
		}
	}
}

// TestVerifierInContainerd: pullguard's wrapper in containerd 2.4.2's verifier directory.
// An allowed pull passes (ctr and CRI); a disallowed one is refused with pullguard's reason in
// ctr's and crictl's error before any of its content is stored; a broken or missing policy
// refuses every pull.
func TestVerifierInContainerd(t *testing.T) {
	e := requireModern(t)
	dir := t.TempDir()
	policyPath := WritePolicy(t, dir, policyWithRunning(e, "enforce", "keep"))
	installVerifier(t, e.Path("c2"), policyPath)
	allowed, evil := e.Ref("approved/busybox:1.0"), e.Ref("evil/miner:latest")
	evilManifest, evilBlobs := registryImage(t, e, "evil/miner", "latest")

	t.Run("ctr allowed", func(t *testing.T) {
		ctrPull(t, e, "default", allowed)
		requireCtrImages(t, e, "default", allowed)
	})
	t.Run("ctr disallowed", func(t *testing.T) {
		_, err := e.CtrErr(t, "default", "images", "pull", "--plain-http", evil)
		if err == nil {
			t.Fatalf("ctr pull %s succeeded", evil)
		}
		if msg := err.Error(); !strings.Contains(msg, "verifier pullguard rejected image") || !strings.Contains(msg, "pullguard: "+evil+"@") ||
			!strings.Contains(msg, "is not allowed: matches deny rule") {
			t.Errorf("ctr's error does not carry pullguard's reason: %v", err)
		}
		requireCtrImages(t, e, "default", allowed)
		requireNoContent(t, e, "default", append(evilBlobs, evilManifest)...)
	})
	t.Run("crictl allowed", func(t *testing.T) {
		e.Crictl(t, "pull", allowed)
		manifest, blobs := registryImage(t, e, "approved/busybox", "1.0")
		want := []string{allowed, e.Registry + "/approved/busybox@" + manifest, blobs[0]}
		requireCtrImages(t, e, "k8s.io", want...)
	})
	t.Run("crictl disallowed", func(t *testing.T) {
		_, err := e.CrictlErr(t, "pull", evil)
		if err == nil {
			t.Fatalf("crictl pull %s succeeded", evil)
		}
		if msg := err.Error(); !strings.Contains(msg, "pullguard: "+evil+"@") || !strings.Contains(msg, "is not allowed: matches deny rule") {
			t.Errorf("crictl's error does not carry pullguard's reason: %v", err)
		}
		requireNoContent(t, e, "k8s.io", append(evilBlobs, evilManifest)...)
	})
	t.Run("broken policy refuses", func(t *testing.T) {
		if err := os.WriteFile(policyPath, []byte("mode: enforce\nallow:\n  - image: [\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		other := e.Ref("approved/busybox:1.1")
		_, err := e.CtrErr(t, "default", "images", "pull", "--plain-http", other)
		if err == nil || !strings.Contains(err.Error(), "cannot load the policy") {
			t.Errorf("pull of %s under a broken policy: %v, want a refusal saying the policy cannot be loaded", other, err)
		}
	})
	t.Run("missing policy refuses", func(t *testing.T) {
		if err := os.Remove(policyPath); err != nil {
			t.Fatal(err)
		}
		other := e.Ref("approved/busybox:1.1")
		_, err := e.CrictlErr(t, "pull", other)
		if err == nil || !strings.Contains(err.Error(), "cannot load the policy") {
			t.Errorf("crictl pull of %s without a policy: %v, want a refusal saying the policy cannot be loaded", other, err)
		}
	})
}

// criPod is a pod and container as the kubelet would ask for them, with the host's network (no
// CNI here), for `crictl run`.
func criPod(t testing.TB, image string) (containerJSON, podJSON string) {
	t.Helper()
	dir := t.TempDir()
	name := strings.ToLower(strings.ReplaceAll(UniqueName(t), "_", "-"))
	if len(name) > 60 {
		name = name[len(name)-60:]
	}
	pod := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name, "attempt": 0},
		"log_directory": dir,
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
	}
	ctr := map[string]any{
		"metadata": map[string]any{"name": "main"},
		"image":    map[string]any{"image": image},
		"command":  []string{"sleep", "300"},
		"log_path": "main.log",
	}
	write := func(file string, v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, file)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("container.json", ctr), write("pod.json", pod)
}

// TestCRIRunningStopOnReload: a pod started with `crictl run` on containerd 2.4.2 whose image
// becomes disallowed after a reload, with `running: stop`: its container is stopped and
// deleted, the image's three CRI records go, the pod's sandbox (an allowed pause image) stays,
// and the journal says so in namespace k8s.io.
func TestCRIRunningStopOnReload(t *testing.T) {
	e := requireModern(t)
	const ns = "k8s.io"
	ref := e.Ref("approved/busybox:1.0")
	pause := e.vars["PGENV_PAUSE_IMAGE"]
	dir := t.TempDir()
	allowPause := fmt.Sprintf("  - image: %s/k8s/pause", e.Registry)
	keep := policyWithRunning(e, "enforce", "keep")
	keep = strings.Replace(keep, "allow:\n", "allow:\n"+allowPause+"\n", 1)
	d := startContainerdGuard(t, e, WritePolicy(t, dir, keep), "--containerd-config", e.ContainerdConfigPath())

	ctrJSON, podJSON := criPod(t, ref)
	id := e.Crictl(t, "run", "--with-pull", ctrJSON, podJSON)
	Eventually(t, actDeadline, func() (bool, string) {
		state := e.Crictl(t, "inspect", "--output", "go-template", "--template", "{{.status.state}}", id)
		return state == "CONTAINER_RUNNING", "the pod's container is " + state
	})
	if n := len(d.Entries(t, "PULLGUARD_NAMESPACE="+ns, "PULLGUARD_ACTION=removed")); n > 0 {
		t.Fatalf("pullguard removed %d records of allowed images", n)
	}

	WritePolicy(t, dir, fmt.Sprintf("mode: enforce\ndefault: deny\nrunning: stop\nallow:\n%s\n  - image: %s/myorg/base\n", allowPause, e.Registry))
	d.WaitEntries(t, actDeadline, 2, "MESSAGE_ID="+msgPolicyLoaded)

	stopped := d.WaitEntry(t, actDeadline, "PULLGUARD_NAMESPACE="+ns, "PULLGUARD_ACTION=stopped")
	requireFields(t, stopped, map[string]string{
		"MESSAGE_ID":        msgActionTaken,
		"PULLGUARD_RUNTIME": "containerd",
		"PULLGUARD_IMAGE":   ref,
	})
	Eventually(t, actDeadline, func() (bool, string) {
		running := e.Crictl(t, "ps", "--quiet", "--state", "running")
		return !strings.Contains(running, id), "the container still runs: " + running
	})
	waitCtrImageGone(t, e, ns, ref)
	Eventually(t, actDeadline, func() (bool, string) {
		imgs := e.CtrImages(t, ns)
		return !slices.ContainsFunc(imgs, func(s string) bool { return strings.Contains(s, "approved/busybox") }),
			fmt.Sprintf("records of %s left: %q", ref, imgs)
	})
	if imgs := e.CtrImages(t, ns); !slices.Contains(imgs, pause) {
		t.Errorf("the allowed pause image is gone: %q", imgs)
	}
	if pods := e.Crictl(t, "pods", "--quiet", "--state", "ready"); pods == "" {
		t.Errorf("the pod's sandbox (allowed) is not ready any more")
	}
}

// startExtraContainerd2 starts one more containerd 2.4.2 (testenv.sh up-containerd2) whose
// registry settings are the drop-in given instead of testenv.sh's, and stops it when the test
// ends. It returns a view
// of the environment on it and its directory.
func startExtraContainerd2(t testing.TB, e *Env, name, dropIn string) (*Env, string) {
	t.Helper()
	dir := e.Path(name)
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf.d", "10-registry.toml"), []byte(dropIn), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := testenv("down-containerd2", e.Dir, name); err != nil {
			t.Errorf("testenv.sh down-containerd2: %v\n%s", err, out)
		}
	})
	if out, err := testenv("up-containerd2", e.Dir, name); err != nil {
		t.Fatalf("testenv.sh up-containerd2: %v\n%s", err, out)
	}
	x := *e
	x.ContainerdAddress = e.Path(filepath.Join("run", name+".sock"))
	x.Engine.containerdConfig = filepath.Join(name, "config.toml")
	x.vars = map[string]string{}
	for k, v := range e.vars {
		x.vars[k] = v
	}
	x.vars["CONTAINERD_ADDRESS"] = x.ContainerdAddress
	return &x, dir
}

// TestPrePullWarning: with the deprecated CRI setting registry.mirrors in a drop-in, the real
// containerd 2.4.2 falls back to local pulls and a CRI pull of a disallowed image is NOT
// refused, though pullguard's wrapper is in place. pullguard says so at start (log and STATUS
// line) naming the setting, and still removes the image after the pull. Without the setting
// (the environment's own containerd 2.4.2, wrapper installed) it says nothing.
func TestPrePullWarning(t *testing.T) {
	e := requireModern(t)
	policyPath := WritePolicy(t, "", policyWithRunning(e, "enforce", "keep"))
	// The registry drop-in: a "mirror" of the environment's registry, in plain HTTP, instead of
	// registry.config_path (containerd refuses both at once).
	mirrors := fmt.Sprintf("version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry.mirrors.%q]\n  endpoint = [%q]\n",
		e.Registry, "http://"+e.Registry)
	x, dir := startExtraContainerd2(t, e, "c2-mirrors", mirrors)
	installVerifier(t, dir, policyPath)
	evil := e.Ref("evil/miner:latest")

	// What containerd itself does with the setting (verified, not assumed).
	if log := readFrom(t, e.Path("logs/c2-mirrors.log"), 0); !strings.Contains(log, "Falling back to local image pull mode") {
		t.Errorf("containerd did not log the fallback to local pulls; its log:\n%s", log)
	}
	if _, err := x.CrictlErr(t, "pull", evil); err != nil {
		t.Fatalf("with registry.mirrors, crictl pull %s was refused, so the fallback did not skip the verifier: %v", evil, err)
	}
	requireCtrImagesContain(t, x, "k8s.io", evil)

	notify := listenNotify(t)
	t.Setenv("NOTIFY_SOCKET", notify.Path)
	d := StartPullguard(t, daemonArgs(policyPath, "--docker-host", "none",
		"--containerd-address", x.ContainerdAddress, "--containerd-config", x.ContainerdConfigPath())...)
	ready := notify.WaitFor(t, readyDeadline, "READY=1")
	status := notifyFields(ready)["STATUS"]
	if !strings.Contains(status, "WARNING") || !strings.Contains(status, "registry.mirrors") {
		t.Errorf("STATUS=%q does not warn about registry.mirrors", status)
	}
	d.WaitEntry(t, actDeadline, "PRIORITY=4", "MESSAGE=containerd does not refuse disallowed pulls before they happen: "+
		`plugins."io.containerd.cri.v1.images".registry.mirrors: makes CRI (the kubelet's pulls) fall back to local pulls, `+
		"which run no image verifier (deprecated; use registry.config_path with hosts.toml files); disallowed pulls are "+
		"removed after the fact instead of refused")
	// The guard after the fact still holds.
	waitCtrImageGone(t, x, "k8s.io", evil)

	// The environment's containerd 2.4.2 has no such setting, and the wrapper is in place.
	installVerifier(t, e.Path("c2"), policyPath)
	notify2 := listenNotify(t)
	t.Setenv("NOTIFY_SOCKET", notify2.Path)
	d2 := StartPullguard(t, daemonArgs(policyPath, "--docker-host", "none",
		"--containerd-address", e.ContainerdAddress, "--containerd-config", e.ContainerdConfigPath())...)
	status = notifyFields(notify2.WaitFor(t, readyDeadline, "READY=1"))["STATUS"]
	if strings.Contains(status, "WARNING") {
		t.Errorf("STATUS=%q warns, though the wrapper is installed and nothing makes CRI skip it", status)
	}
	// Setup warnings are logged before "started": once that is in the journal, they would be.
	d2.WaitEntries(t, readyDeadline, 1, "MESSAGE_ID="+msgStarted)
	if ws := d2.Entries(t, "PRIORITY=4"); len(ws) > 0 {
		t.Errorf("warnings logged for a setup that refuses pulls before they happen: %s", describeEntries(ws))
	}
}

// requireCtrImagesContain fails the test unless the namespace holds an image record named ref.
func requireCtrImagesContain(t testing.TB, e *Env, ns, ref string) {
	t.Helper()
	if imgs := e.CtrImages(t, ns); !slices.Contains(imgs, ref) {
		t.Fatalf("%s is not in namespace %s: %q", ref, ns, imgs)
	}
}

// BenchmarkVerifyImage: one verification as containerd's bindir plugin runs it — the wrapper
// exec'ing `pullguard verify-image` with containerd's arguments and the descriptor on stdin,
// loading the policy and judging — against containerd's per-verifier timeout (10 s). Warm:
// binary and policy in the page cache, verifyWarmRuns times; cold: the page cache dropped
// before each of verifyColdRuns runs. The floor, in the same run, is the same wrapper exec'ing
// /bin/true: what any verifier costs in process start-up.
func BenchmarkVerifyImage(b *testing.B) {
	e := requireModern(b)
	dir := b.TempDir()
	policyPath := WritePolicy(b, dir, policyWithRunning(e, "enforce", "keep"))
	wrapper := filepath.Join(dir, "pullguard-verifier")
	if err := os.WriteFile(wrapper, []byte(verifierScript(b, policyPath)), 0o755); err != nil {
		b.Fatal(err)
	}
	floor := filepath.Join(dir, "floor-verifier")
	if err := os.WriteFile(floor, []byte("#!/bin/sh\nexec /bin/true \"$@\"\n"), 0o755); err != nil {
		b.Fatal(err)
	}
	ref := e.Ref("approved/busybox:1.0")
	manifest, _ := registryImage(b, e, "approved/busybox", "1.0")
	desc := fmt.Sprintf(`{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":%q,"size":528}`, manifest)
	verify := func(bin string) time.Duration {
		cmd := exec.Command(bin, "-name", ref, "-digest", manifest, "-stdin-media-type", "application/vnd.oci.descriptor.v1+json")
		cmd.Stdin = strings.NewReader(desc)
		start := time.Now()
		out, err := cmd.Output()
		took := time.Since(start)
		if err != nil {
			b.Fatalf("%s: %v: %s", bin, err, out)
		}
		return took
	}
	dropCaches := func() {
		exec.Command("sync").Run()
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
			b.Fatalf("dropping the page cache: %v", err)
		}
	}
	run := func(name, bin string, n int, cold bool) {
		lat := make([]time.Duration, 0, n)
		verify(bin) // the first run is neither warm nor cold
		for range n {
			if cold {
				dropCaches()
			}
			lat = append(lat, verify(bin))
		}
		slices.Sort(lat)
		p50, p99 := percentile(lat, 50), percentile(lat, 99)
		b.ReportMetric(millis(p50), name+"-p50-ms")
		b.ReportMetric(millis(p99), name+"-p99-ms")
		b.Logf("%s: %d verifications: p50 %v p99 %v max %v (containerd's per-verifier timeout: 10s)", name, n, p50, p99, lat[len(lat)-1])
	}
	b.ResetTimer()
	run("warm", wrapper, verifyWarmRuns, false)
	run("floor-warm", floor, verifyWarmRuns, false)
	run("cold", wrapper, verifyColdRuns, true)
	run("floor-cold", floor, verifyColdRuns, true)
}

const (
	verifyWarmRuns = 200
	verifyColdRuns = 20
)
