package integration

// End-to-end test of pullguard's container image (issue 15): the image `make image` builds is
// imported into the environment's containerd and run the way deploy/kubernetes runs it on a
// node — root without capabilities, no new privileges, a read-only root file system,
// containerd's directory mounted read-write, the policy mounted read-only as a ConfigMap
// directory, an emptyDir for /run/pullguard, JSON logs on stderr — and it removes a
// disallowed image pulled into k8s.io while keeping its own image and the allowed ones.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
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
// ..data to a timestamped directory, which an update replaces by swapping ..data.
func configMapDir(t testing.TB, policy string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
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
	runDir := socketDir(t, "pgrun-")
	sockDir := filepath.Dir(e.ContainerdAddress)
	logFile := filepath.Join(t.TempDir(), "pullguard.log")
	id := ctrContainerID()
	args := []string{"run", "-d", "--read-only", "--log-uri", "file://" + logFile}
	// capabilities.drop: [ALL]. ctr takes no ALL: drop each of its default set.
	for _, c := range ctrDefaultCaps {
		args = append(args, "--cap-drop", c)
	}
	e.Ctr(t, ns, append(args,
		"--mount", "type=bind,src="+sockDir+",dst=/run/containerd,options=rbind:rw",
		"--mount", "type=bind,src="+policyDir+",dst=/etc/pullguard,options=rbind:ro",
		"--mount", "type=bind,src="+runDir+",dst=/run/pullguard,options=rbind:rw",
		imageRef, id,
		// deploy/kubernetes's args, after the image's entrypoint (ctr replaces both).
		"/pullguard", "daemon", "--policy=/etc/pullguard/policy.yaml", "--docker-host=none",
		"--containerd-address=/run/containerd/"+filepath.Base(e.ContainerdAddress),
		"--containerd-namespaces="+ns, "--log-target=stderr", "--log-format=json")...)
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

	// pullguard status, inside the container, over the socket in the emptyDir.
	out := e.Ctr(t, ns, "tasks", "exec", "--exec-id", "status-"+id, id, "/pullguard", "status")
	for _, want := range []string{"mode: enforce", "containerd: connected", "removed 1"} {
		if !strings.Contains(oneSpace(out), want) {
			t.Errorf("pullguard status in the container lacks %q:\n%s", want, out)
		}
	}

	// An update of the ConfigMap (a ..data swap) is reloaded: audit mode removes nothing.
	swapConfigMap(t, policyDir, strings.Replace(policy, "mode: enforce", "mode: audit", 1))
	waitLogEntry(t, logFile, actDeadline, map[string]string{"MESSAGE_ID": msgPolicyLoaded, "PULLGUARD_MODE": "audit"})
	ctrPull(t, e, ns, evil2)
	waitLogEntry(t, logFile, actDeadline, map[string]string{"PULLGUARD_ACTION": "would-remove", "PULLGUARD_IMAGE": evil2})
	requireCtrImages(t, e, ns, imageRef, allowed, evil2)
}
