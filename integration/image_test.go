package integration

// End-to-end test of pullguard's container image (issue 15): the image `make image` builds is
// imported into the environment's containerd and run the way deploy/kubernetes/pullguard.yaml
// runs it on a node — its arguments, volume mounts and security context are read from the
// manifest: root without capabilities, no new privileges, a read-only root file system,
// containerd's directory mounted read-write, the policy as a ConfigMap directory (mode 0777,
// as kubelet makes it), an emptyDir for /run/pullguard, JSON logs on stderr — and it removes a
// disallowed image pulled into k8s.io while keeping its own image and the allowed ones.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// buildImage builds the static binary and the image tarball once per test binary, as `make
// image` does.
var buildImage = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pullguard-image-")
	if err != nil {
		return "", err
	}
	bin, tarball := filepath.Join(dir, "pullguard"), filepath.Join(dir, "image.tar")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/pullguard")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	img := exec.Command("go", "run", "./deploy/image", "-binary", bin, "-tag", imageTag, "-version", "e2e", "-o", tarball)
	img.Dir = ".."
	if out, err := img.CombinedOutput(); err != nil {
		return "", fmt.Errorf("deploy/image: %w\n%s", err, out)
	}
	return tarball, nil
})

// imageTag is what the test calls the image; containerd lists it normalized (imageRef).
const (
	imageTag = "pullguard/pullguard:e2e"
	imageRef = "docker.io/pullguard/pullguard:e2e"
)

// ctrDefaultCaps are the capabilities containerd's default spec grants.
var ctrDefaultCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// configMapDir lays policy out as kubelet mounts a ConfigMap: the file is a symlink through
// ..data to a timestamped directory, which an update replaces by swapping ..data, and the
// volume's directory has an emptyDir's mode, 0777.
func configMapDir(t testing.TB, policy string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	swapConfigMap(t, dir, policy)
	if err := os.Symlink("..data/policy.yaml", filepath.Join(dir, "policy.yaml")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// swapConfigMap writes policy into a new timestamped directory and points ..data at it
// atomically, as kubelet's atomic writer does.
func swapConfigMap(t testing.TB, dir, policy string) {
	t.Helper()
	ts := "..2026_" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ts, "policy.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// jsonLog reads the container's stderr log: one JSON object a line.
func jsonLog(t testing.TB, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var entries []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("a log line is not JSON: %q", sc.Text())
			continue
		}
		entries = append(entries, m)
	}
	return entries
}

// waitLogEntry waits until the log holds an entry with every field given.
func waitLogEntry(t testing.TB, path string, deadline time.Duration, fields map[string]string) map[string]any {
	t.Helper()
	var found map[string]any
	Eventually(t, deadline, func() (bool, string) {
		entries := jsonLog(t, path)
	next:
		for _, en := range entries {
			for k, v := range fields {
				if fmt.Sprint(en[k]) != v {
					continue next
				}
			}
			found = en
			return true, ""
		}
		return false, fmt.Sprintf("no log entry with %v among %d", fields, len(entries))
	})
	return found
}

// procStatus reads fields of /proc/PID/status.
func procStatus(t testing.TB, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

// daemonSetContainer is pullguard's container as deploy/kubernetes/pullguard.yaml runs it,
// with the volumes it mounts.
func daemonSetContainer(t testing.TB) (corev1.Container, map[string]corev1.Volume) {
	t.Helper()
	b, err := os.ReadFile("../deploy/kubernetes/pullguard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---") {
		if !strings.Contains(doc, "kind: DaemonSet") {
			continue
		}
		var ds appsv1.DaemonSet
		if err := yaml.UnmarshalStrict([]byte(doc), &ds); err != nil {
			t.Fatal(err)
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range ds.Spec.Template.Spec.Volumes {
			volumes[v.Name] = v
		}
		return ds.Spec.Template.Spec.Containers[0], volumes
	}
	t.Fatal("no DaemonSet in deploy/kubernetes/pullguard.yaml")
	return corev1.Container{}, nil
}

func TestImageRunsAsTheDaemonSetDoes(t *testing.T) {
	e := RequireEnv(t)
	const ns = "k8s.io"
	tarball, err := buildImage()
	if err != nil {
		t.Fatal(err)
	}
	e.Ctr(t, ns, "images", "import", tarball)

	allowed, evil, evil2 := e.Ref("approved/busybox:1.0"), e.Ref("evil/miner:latest"), e.Ref("evil/miner:1.0")
	policy := fmt.Sprintf("mode: enforce\nallow:\n  - image: %s/approved/**\n  - image: pullguard/pullguard\n", e.Registry)
	policyDir := configMapDir(t, policy)
	// The node's side of each volume the DaemonSet mounts.
	hostDirs := map[string]string{
		"hostPath":  filepath.Dir(e.ContainerdAddress),
		"configMap": policyDir,
		"emptyDir":  socketDir(t, "pgrun-"),
	}
	c, volumes := daemonSetContainer(t)
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.RunAsUser == nil || *sc.RunAsUser != 0 ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Fatalf("the DaemonSet's securityContext changed (%+v): update how this test runs it", sc)
	}
	logFile := filepath.Join(t.TempDir(), "pullguard.log")
	id := ctrContainerID()
	// readOnlyRootFilesystem; runAsUser 0 is the image's user; ctr sets no_new_privs
	// (allowPrivilegeEscalation: false) by default.
	args := []string{"run", "-d", "--read-only", "--log-uri", "file://" + logFile}
	// capabilities.drop: [ALL]. ctr takes no ALL: drop each of its default set.
	for _, c := range ctrDefaultCaps {
		args = append(args, "--cap-drop", c)
	}
	for _, m := range c.VolumeMounts {
		v := volumes[m.Name]
		var kind string
		switch {
		case v.HostPath != nil:
			kind = "hostPath"
		case v.ConfigMap != nil:
			kind = "configMap"
		case v.EmptyDir != nil:
			kind = "emptyDir"
		default:
			t.Fatalf("volume %s: a kind this test cannot provide", m.Name)
		}
		mode := "rw"
		if m.ReadOnly || kind == "configMap" { // kubelet mounts ConfigMaps read-only
			mode = "ro"
		}
		src := hostDirs[kind]
		if m.Name == "nri" {
			// containerd 1.6 has no NRI: the node's directory stays empty,
			// and the guard runs while it waits for the socket.
			src = socketDir(t, "pgnri-")
		}
		args = append(args, "--mount", fmt.Sprintf("type=bind,src=%s,dst=%s,options=rbind:%s", src, m.MountPath, mode))
	}
	// The DaemonSet's arguments after the image's entrypoint (ctr replaces both), with the
	// environment's socket name and only the namespace this test uses.
	args = append(args, imageRef, id, "/pullguard")
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--containerd-address=") {
			a = "--containerd-address=/run/containerd/" + filepath.Base(e.ContainerdAddress)
		}
		args = append(args, a)
	}
	e.Ctr(t, ns, append(args, "--containerd-namespaces="+ns)...)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("pullguard's container log:\n%s", b)
		}
	})
	waitLogEntry(t, logFile, readyDeadline, map[string]string{"MESSAGE_ID": msgStarted})

	// It runs as the DaemonSet's securityContext says.
	var pid int
	for _, line := range strings.Split(e.Ctr(t, ns, "tasks", "ls"), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == id {
			pid, _ = strconv.Atoi(f[1])
		}
	}
	if pid == 0 {
		t.Fatalf("no task %s", id)
	}
	st := procStatus(t, pid)
	if !strings.HasPrefix(st["Uid"], "0\t") || st["CapEff"] != "0000000000000000" || st["CapBnd"] != "0000000000000000" || st["NoNewPrivs"] != "1" {
		t.Errorf("pullguard runs with Uid %q CapEff %s CapBnd %s NoNewPrivs %s; want root with no capabilities and no new privileges",
			st["Uid"], st["CapEff"], st["CapBnd"], st["NoNewPrivs"])
	}
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[4] == "/" && !strings.HasPrefix(f[5], "ro") {
			t.Errorf("the root file system is mounted %s, want ro", f[5])
		}
	}

	ctrPull(t, e, ns, allowed)
	ctrPull(t, e, ns, evil)
	waitCtrImageGone(t, e, ns, evil)
	en := waitLogEntry(t, logFile, actDeadline, map[string]string{"PULLGUARD_ACTION": "removed", "PULLGUARD_IMAGE": evil})
	if en["PULLGUARD_NAMESPACE"] != ns || en["PULLGUARD_RUNTIME"] != "containerd" {
		t.Errorf("removed entry: %v", en)
	}
	// Its own image, the allowed one: still there.
	requireCtrImages(t, e, ns, imageRef, allowed)

	// pullguard status, inside the container, over the socket in the emptyDir: the
	// liveness probe's command.
	probe := c.LivenessProbe.Exec.Command
	out := e.Ctr(t, ns, append([]string{"tasks", "exec", "--exec-id", "probe-" + id, id}, probe...)...)
	for _, want := range []string{"mode: enforce", "containerd: connected", "removed 1"} {
		if !strings.Contains(oneSpace(out), want) {
			t.Errorf("%s in the container lacks %q:\n%s", strings.Join(probe, " "), want, out)
		}
	}

	// An update of the ConfigMap (a ..data swap) is reloaded: audit mode removes nothing.
	swapConfigMap(t, policyDir, strings.Replace(policy, "mode: enforce", "mode: audit", 1))
	waitLogEntry(t, logFile, actDeadline, map[string]string{"MESSAGE_ID": msgPolicyLoaded, "PULLGUARD_MODE": "audit"})
	ctrPull(t, e, ns, evil2)
	waitLogEntry(t, logFile, actDeadline, map[string]string{"PULLGUARD_ACTION": "would-remove", "PULLGUARD_IMAGE": evil2})
	requireCtrImages(t, e, ns, imageRef, allowed, evil2)
}
