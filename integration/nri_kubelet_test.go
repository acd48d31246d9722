package integration

// Issue 25 through a real kubelet: kubelet v1.37.2 (built by testenv.sh install), standalone
// (no API server) with static pods, on a containerd 2.4.2 of its own with pullguard's NRI
// plugin and image verifier.

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kubeletDeadline bounds what a kubelet takes to start a static pod: start-up, the pod
// sandbox's image pulled, the container's image pulled, created and started.
const kubeletDeadline = 3 * time.Minute

// kubeletNode is a kubelet started by startKubelet.
type kubeletNode struct {
	dir       string // everything of the kubelet: config, root dir, pod logs, its log
	manifests string // its staticPodPath
	logPath   string
	cmd       *exec.Cmd
	done      chan struct{}
}

// kubeletNodeName is the node name the kubelet runs under; static pods' CRI names end in it.
const kubeletNodeName = "pg-kubelet"

// kubeletSysctls are the kernel settings a kubelet sets on start unless protectKernelDefaults
// (then it refuses to start unless they hold already), with the values it wants. The test's
// kubelet reads these values from files bound over /proc/sys in its own mount namespace, so it
// leaves the host's alone (kernel.panic_on_oops=1 would make any oops on the machine a panic).
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// startKubelet starts a standalone kubelet on x's containerd (CRI), with its static pods in
// k.manifests, and stops it when the test ends, with every pod it ran and the cgroups it made.
//
// The kubelet runs in a mount namespace of its own, where /var/lib and /var/log are empty
// tmpfs and the kernel settings it would change are files (kubeletSysctls): it writes some paths
// it has no setting for (/var/lib/kubelet/device-plugins, /var/log/containers), and none of
// that reaches the host. Its pods use the host's network (no CNI) and no volumes: mounts the
// kubelet made in its namespace would not reach containerd's. Its cgroups go under a
// cgroupRoot of its own. No API server: no kubeconfig, static pods only, and its own server
// off (enableServer: false).
func startKubelet(t *testing.T, x *Env) *kubeletNode {
	t.Helper()
	bin := x.vars["PGENV_KUBELET"]
	if bin == "" {
		t.Fatal("the test environment has no kubelet (PGENV_KUBELET): build it with sudo integration/testenv.sh install")
	}
	// Short: the kubelet puts unix sockets below its root dir.
	dir := filepath.Join(x.Dir, "kubelet")
	k := &kubeletNode{dir: dir, manifests: filepath.Join(dir, "manifests"), logPath: filepath.Join(dir, "kubelet.log"),
		done: make(chan struct{})}
	// A kubelet of an earlier run in this environment (-count) left its manifests there.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"manifests", "root", "pki", "pod-logs", "sysctl"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cgroupRoot := fmt.Sprintf("/pgkubelet-%x", sha256.Sum256([]byte(dir)))[:len("/pgkubelet-")+12]
	cgroupDirs := makeCgroupRoot(t, cgroupRoot)

	config := filepath.Join(dir, "config.json")
	writeJSON(t, config, map[string]any{
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"kind":                     "KubeletConfiguration",
		"staticPodPath":            k.manifests,
		"fileCheckFrequency":       "1s",
		"containerRuntimeEndpoint": "unix://" + x.ContainerdAddress,
		"cgroupDriver":             "cgroupfs",
		"cgroupRoot":               cgroupRoot,
		"failCgroupV1":             false,
		"failSwapOn":               false,
		"enableServer":             false,
		"readOnlyPort":             0,
		"healthzPort":              0,
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": true},
			"webhook":   map[string]any{"enabled": false},
		},
		"authorization":          map[string]any{"mode": "AlwaysAllow"},
		"podLogsDir":             filepath.Join(dir, "pod-logs"),
		"makeIPTablesUtilChains": false,
		// Neither image garbage collection nor eviction on a busy test machine's disk: the
		// test's images stay until the test removes them.
		"imageGCHighThresholdPercent": 100,
		"evictionHard":                map[string]string{"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
	})

	// The mount namespace (see above): sh sets it up, then execs the kubelet in its place.
	script := []string{"set -e",
		"mount -t tmpfs -o mode=0755,size=64m pg-kubelet /var/lib",
		"mount -t tmpfs -o mode=0755,size=64m pg-kubelet /var/log"}
	for key, value := range kubeletSysctls {
		file := filepath.Join(dir, "sysctl", strings.ReplaceAll(key, "/", "."))
		if err := os.WriteFile(file, []byte(value+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		script = append(script, fmt.Sprintf("mount --bind %s /proc/sys/%s", file, key))
	}
	script = append(script, `exec "$@"`)
	logFile, err := os.Create(k.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	k.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", strings.Join(script, "\n"), "kubelet-sandbox",
		bin, "--config", config, "--root-dir", filepath.Join(dir, "root"), "--cert-dir", filepath.Join(dir, "pki"),
		"--hostname-override", kubeletNodeName, "--v", "1")
	k.cmd.Stdout, k.cmd.Stderr = logFile, logFile
	// Its own session, as testenv.sh starts daemons, so a Ctrl-C aimed at go test does not
	// reach it first; killed with the test binary if that dies without cleaning up (a panic,
	// -timeout), since testenv.sh down does not know the kubelet.
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if err := k.cmd.Start(); err != nil {
		t.Fatalf("starting the kubelet: %v", err)
	}
	go func() { k.cmd.Wait(); close(k.done) }()
	t.Cleanup(func() {
		k.stop(t)
		if t.Failed() {
			t.Logf("the kubelet's log (last 60 lines of %s):\n%s", k.logPath, lastLines(readFrom(t, k.logPath, 0), 60))
		}
		// The kubelet leaves its pods running when it stops: they go with it.
		if _, err := x.CrictlErr(t, "rmp", "--all", "--force"); err != nil {
			t.Errorf("removing the kubelet's pods: %v", err)
		}
		removeCgroupTrees(t, cgroupDirs)
		if left := mountsUnder(t, dir); len(left) > 0 {
			t.Errorf("mounts left under the kubelet's directory: %q", left)
		}
	})
	return k
}

// stop ends the kubelet: SIGTERM, SIGKILL after 20s. Its pods keep running (a kubelet leaves
// them to the runtime).
func (k *kubeletNode) stop(t testing.TB) {
	t.Helper()
	select {
	case <-k.done:
		return
	default:
	}
	k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(20 * time.Second):
		t.Errorf("the kubelet ignored SIGTERM for 20s; killing it")
		k.cmd.Process.Kill()
		<-k.done
	}
}

// staticPod writes the manifest of a pod named name with one container, also named name, of
// image, on the host's network; the kubelet picks it up within a second.
func (k *kubeletNode) staticPod(t testing.TB, name, image, pullPolicy string) {
	t.Helper()
	writeJSON(t, filepath.Join(k.manifests, name+".json"), map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"name": name, "namespace": "default"},
		"spec": map[string]any{
			"hostNetwork":                   true,
			"terminationGracePeriodSeconds": 1,
			"containers": []map[string]any{{
				"name": name, "image": image, "imagePullPolicy": pullPolicy,
				"command": []string{"sleep", "3600"},
			}},
		},
	})
}

// log is what the kubelet logged so far.
func (k *kubeletNode) log(t testing.TB) string {
	t.Helper()
	return readFrom(t, k.logPath, 0)
}

// logLine is the first line of the kubelet's log holding all of substrs, or "".
func (k *kubeletNode) logLine(t testing.TB, substrs ...string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(k.log(t)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if containsAll(sc.Text(), substrs...) {
			return sc.Text()
		}
	}
	return ""
}

func containsAll(s string, substrs ...string) bool {
	for _, sub := range substrs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// running reports whether the kubelet is still up, and if not, how it ended.
func (k *kubeletNode) running() (bool, string) {
	select {
	case <-k.done:
		return false, fmt.Sprintf("the kubelet exited: %v", k.cmd.ProcessState)
	default:
		return true, ""
	}
}

// criContainers lists the IDs of x's CRI containers named name (the kubelet names a CRI
// container after the pod spec's), in any state.
func criContainers(t testing.TB, x *Env, name string) []string {
	t.Helper()
	return sortedFields(x.Crictl(t, "ps", "--all", "--quiet", "--name", "^"+name+"$"))
}

// criContainerStates lists the states of x's CRI containers named name.
func criContainerStates(t testing.TB, x *Env, name string) []string {
	t.Helper()
	var out struct {
		Containers []struct{ State string }
	}
	if err := json.Unmarshal([]byte(x.Crictl(t, "ps", "--all", "--name", "^"+name+"$", "--output", "json")), &out); err != nil {
		t.Fatalf("crictl ps: %v", err)
	}
	var states []string
	for _, c := range out.Containers {
		states = append(states, c.State)
	}
	return states
}

// makeCgroupRoot makes the cgroup path root in every cgroup hierarchy mounted (v1: one a
// controller; v2: the one), for a kubelet's cgroupRoot, which must exist. It returns them.
func makeCgroupRoot(t testing.TB, root string) []string {
	t.Helper()
	var dirs []string
	for _, mnt := range cgroupMounts(t) {
		dir := filepath.Join(mnt, root)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			t.Fatalf("making the kubelet's cgroup root: %v", err)
		}
		dirs = append(dirs, dir)
		// A v1 cpuset cgroup admits no task until it has CPUs and memory nodes: its parent's.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(mnt, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					t.Fatalf("cgroup root %s: %v", dir, err)
				}
			}
		}
	}
	if len(dirs) == 0 {
		t.Fatal("no cgroup hierarchy is mounted")
	}
	return dirs
}

// cgroupMounts are the mount points of the cgroup hierarchies (v1 and v2), from mountinfo.
func cgroupMounts(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		_, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(line)
		if !ok || len(f) < 5 {
			continue
		}
		if fstype := strings.Fields(post)[0]; fstype == "cgroup" || fstype == "cgroup2" {
			out = append(out, f[4])
		}
	}
	return out
}

// removeCgroupTrees removes each cgroup directory and everything below it, deepest first
// (cgroups go with rmdir only, once their tasks are gone: retried for a while).
func removeCgroupTrees(t testing.TB, roots []string) {
	t.Helper()
	for _, root := range roots {
		var err error
		for try := 0; try < 50; try++ {
			if err = removeCgroupTree(root); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("the kubelet's cgroups are left: %v", err)
		}
	}
}

func removeCgroupTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroupTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rmdir %s: %w", dir, err)
	}
	return nil
}

// mountsUnder lists the mount points below dir.
func mountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) >= 5 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestNRIKubeletStaticPods: a real kubelet on containerd 2.4.2 with pullguard's NRI plugin and
// image verifier. Three static pods: one of evil content imported into k8s.io under an approved
// name (imagePullPolicy: Never, so nothing is pulled) is never created, and the kubelet's log
// carries pullguard's reason; one of an approved image runs; one whose pull the verifier
// refuses does not run either, and the kubelet's log carries the verifier's reason.
func TestNRIKubeletStaticPods(t *testing.T) {
	e := requireModern(t)
	// A containerd of its own: a kubelet removes every pod of its runtime it did not start.
	// The registry as testenv.sh configures it (certs.d, plain HTTP), so pulls go through
	// the image verifier.
	name := "c2-kubelet"
	dropIn := fmt.Sprintf("version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = %q\n",
		filepath.Join(e.Path(name), "certs.d"))
	x, dir := startExtraContainerd2(t, e, name, dropIn)
	policyPath := WritePolicy(t, "", nriPolicy(e, "enforce"))
	installVerifier(t, dir, policyPath)
	imported := e.Ref("approved/imported:1")
	importEvilAsApproved(t, x, imported)
	allowed, evil := e.Ref("approved/busybox:1.0"), e.Ref("evil/miner:1.0")
	d := startNRIGuard(t, x, policyPath)

	k := startKubelet(t, x)
	k.staticPod(t, "imported", imported, "Never")
	k.staticPod(t, "allowed", allowed, "IfNotPresent")
	k.staticPod(t, "pulldenied", evil, "Always")

	// The approved image's pod runs; the imported one's container is never created.
	Eventually(t, kubeletDeadline, func() (bool, string) {
		if ok, why := k.running(); !ok {
			t.Fatal(why)
		}
		if ids := criContainers(t, x, "imported"); len(ids) > 0 {
			t.Fatalf("the kubelet created a container of %s (evil content under an approved name): %q", imported, ids)
		}
		states := criContainerStates(t, x, "allowed")
		return slices.Contains(states, "CONTAINER_RUNNING"), fmt.Sprintf("the approved image's containers are %q", states)
	})

	// The kubelet tried to create the imported one, and CRI gave it pullguard's refusal.
	var refused string
	Eventually(t, kubeletDeadline, func() (bool, string) {
		refused = k.logLine(t, "CreateContainerError", "pullguard: "+imported, "is not allowed", reasonLocalContent)
		return refused != "", "the kubelet's log has no refusal by pullguard of " + imported
	})
	t.Logf("kubelet: %s", refused)
	if ids := criContainers(t, x, "imported"); len(ids) > 0 {
		t.Errorf("a container of %s exists: %q", imported, ids)
	}
	entry := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=blocked", "PULLGUARD_EVENT=nri", "PULLGUARD_IMAGE="+imported)
	requireFields(t, entry, map[string]string{"PULLGUARD_HOOK": "nri", "PULLGUARD_RUNTIME": "containerd"})

	// The disallowed pull: the verifier refused it, the kubelet says why, nothing arrived.
	var pullRefused string
	Eventually(t, kubeletDeadline, func() (bool, string) {
		pullRefused = k.logLine(t, "ErrImagePull", "pullguard: "+evil+"@", "is not allowed")
		return pullRefused != "", "the kubelet's log has no pull of " + evil + " refused by pullguard"
	})
	t.Logf("kubelet: %s", pullRefused)
	if ids := criContainers(t, x, "pulldenied"); len(ids) > 0 {
		t.Errorf("a container of %s exists: %q", evil, ids)
	}
	for _, img := range x.CtrImages(t, "k8s.io") {
		if strings.HasPrefix(img, e.Registry+"/evil/miner") {
			t.Errorf("%s is in k8s.io after the verifier refused its pull", img)
		}
	}
	if n := len(d.Entries(t, "PULLGUARD_EVENT=nri", "PULLGUARD_IMAGE="+allowed)); n > 0 {
		t.Errorf("pullguard journaled %d NRI entries about the approved %s", n, allowed)
	}
	if ok, why := k.running(); !ok {
		t.Error(why)
	}
}
