package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// commandTimeout bounds every runtime CLI call, so a wedged daemon fails a test instead of
// hanging the whole run until go test's -timeout.
const commandTimeout = 2 * time.Minute

// Env is one private runtime environment, as described by DIR/env (see testenv.sh), seen
// through one of its engine stacks: a containerd and the dockerd that runs on it. The
// environment runs two, Debian 12's (containerd 1.6, dockerd 20.10) and the 2026 one built from
// the Go module proxy (containerd 2.4.2, Docker 29); Stacks gives one Env per stack, and every
// method of an Env (Docker, Ctr, Reset...) talks to its stack only.
type Env struct {
	Dir               string // PGENV_DIR: everything of the environment lives below it
	DockerHost        string // unix:// address of the stack's dockerd
	ContainerdAddress string // socket path of the stack's containerd
	DockerNamespace   string // containerd namespace of Docker's containers and images ("moby")
	Registry          string // REGISTRY: 127.0.0.1:PORT, a plain-HTTP registry holding the seeded images
	Tools             string // PGENV_TOOLS: bin directory of the 2026 tools (ctr, crictl, cosign...)
	Engine            Engine // which stack this Env talks to
	vars              map[string]string
}

// Engine names the daemons of one stack, as subtests are named.
type Engine struct {
	Docker     string // "docker-20.10", "docker-29"
	Containerd string // "containerd-1.6", "containerd-2.4.2"
	// Modern: containerd ≥ 2 (image verifiers, transfer service, CRI) under a Docker with the
	// containerd image store (Docker's images are records in namespace moby).
	Modern bool
	// APIPath is the Docker API version prefix of raw requests: dockerd 20.10 speaks up to 1.41,
	// Docker 29 no older than 1.44.
	APIPath string
	// paths of the stack's files, relative to DIR (see testenv.sh)
	dockerConfig, dockerLog, containerdConfig string
	restartArg                                string // extra argument of testenv.sh restart-*
}

var (
	debian12 = Engine{Docker: "docker-20.10", Containerd: "containerd-1.6", APIPath: "/v1.41",
		dockerConfig: "docker/daemon.json", dockerLog: "logs/dockerd.log", containerdConfig: "containerd/config.toml"}
	modern = Engine{Docker: "docker-29", Containerd: "containerd-2.4.2", Modern: true, APIPath: "/v1.44",
		dockerConfig: "d29/daemon.json", dockerLog: "logs/dockerd29.log", containerdConfig: "c2/config.toml",
		restartArg: "2026"}
)

// RequireEnv returns the environment's Debian 12 stack, or skips the test or benchmark when
// integration tests cannot run here. It also resets that stack when the test ends, so each
// test starts with no containers and no images. Tests that hold for every engine use
// ForEachDocker or ForEachContainerd instead.
func RequireEnv(t testing.TB) *Env {
	t.Helper()
	if theEnv == nil {
		t.Skip(skipReason)
	}
	t.Cleanup(func() { theEnv.Reset(t) })
	return theEnv
}

// Stacks is the table of engines every end-to-end suite runs against.
func (e *Env) Stacks() []*Env { return []*Env{e, e.modernStack()} }

// modernStack is e seen through containerd 2.4.2 and Docker 29.
func (e *Env) modernStack() *Env {
	m := *e
	m.Engine = modern
	m.DockerHost = e.vars["DOCKER29_HOST"]
	m.ContainerdAddress = e.vars["CONTAINERD2_ADDRESS"]
	m.DockerNamespace = e.vars["DOCKER29_CONTAINERD_NAMESPACE"]
	m.vars = maps.Clone(e.vars)
	// Environ then points the docker CLI, ctr and pullguard's defaults at this stack.
	m.vars["DOCKER_HOST"] = m.DockerHost
	m.vars["CONTAINERD_ADDRESS"] = m.ContainerdAddress
	m.vars["DOCKERD_PID_FILE"] = e.vars["DOCKERD29_PID_FILE"]
	m.vars["CONTAINERD_PID_FILE"] = e.vars["CONTAINERD2_PID_FILE"]
	return &m
}

// ForEachDocker runs test as one subtest per Docker engine (named after it), each on an
// environment reset when the subtest ends.
func ForEachDocker(t *testing.T, test func(t *testing.T, e *Env)) {
	forEachStack(t, func(e *Env) string { return e.Engine.Docker }, test)
}

// ForEachDockerBench is ForEachDocker for benchmarks: one sub-benchmark per Docker engine.
func ForEachDockerBench(b *testing.B, bench func(b *testing.B, e *Env)) {
	forEachStackBench(b, func(e *Env) string { return e.Engine.Docker }, bench)
}

// ForEachContainerdBench is ForEachContainerd for benchmarks.
func ForEachContainerdBench(b *testing.B, bench func(b *testing.B, e *Env)) {
	forEachStackBench(b, func(e *Env) string { return e.Engine.Containerd }, bench)
}

func forEachStackBench(b *testing.B, name func(*Env) string, bench func(b *testing.B, e *Env)) {
	if theEnv == nil {
		b.Skip(skipReason)
	}
	for _, e := range theEnv.Stacks() {
		b.Run(name(e), func(b *testing.B) {
			b.Cleanup(func() { e.Reset(b) })
			bench(b, e)
		})
	}
}

// ForEachContainerd runs test as one subtest per containerd (named after it).
func ForEachContainerd(t *testing.T, test func(t *testing.T, e *Env)) {
	forEachStack(t, func(e *Env) string { return e.Engine.Containerd }, test)
}

func forEachStack(t *testing.T, name func(*Env) string, test func(t *testing.T, e *Env)) {
	t.Helper()
	if theEnv == nil {
		t.Skip(skipReason)
	}
	for _, e := range theEnv.Stacks() {
		t.Run(name(e), func(t *testing.T) {
			t.Cleanup(func() { e.Reset(t) })
			test(t, e)
		})
	}
}

// Path is the file of the stack at rel below DIR.
func (e *Env) Path(rel string) string { return filepath.Join(e.Dir, rel) }

// DockerConfigPath is the stack's dockerd daemon.json; DockerLogPath its log.
func (e *Env) DockerConfigPath() string { return e.Path(e.Engine.dockerConfig) }
func (e *Env) DockerLogPath() string    { return e.Path(e.Engine.dockerLog) }

// ContainerdConfigPath is the stack's containerd config.toml.
func (e *Env) ContainerdConfigPath() string { return e.Path(e.Engine.containerdConfig) }

// ctrBin is the ctr that matches the stack's containerd.
func (e *Env) ctrBin() string {
	if e.Engine.Modern {
		return filepath.Join(e.Tools, "ctr")
	}
	return "ctr"
}

// Tool is the path of one of the 2026 tools (crictl, cosign, helm, runc...).
func (e *Env) Tool(name string) string { return filepath.Join(e.Tools, name) }

// Restart runs `testenv.sh restart-WHAT DIR` for this stack ("dockerd" or "containerd").
func (e *Env) Restart(t testing.TB, what string) {
	t.Helper()
	args := []string{"restart-" + what, e.Dir}
	if e.Engine.restartArg != "" {
		args = append(args, e.Engine.restartArg)
	}
	if out, err := testenv(args...); err != nil {
		t.Fatalf("testenv.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// loadEnv reads DIR/env, the `export KEY=value` lines written by `testenv.sh up`.
func loadEnv(dir string) (*Env, error) {
	f, err := os.Open(filepath.Join(dir, "env"))
	if err != nil {
		return nil, fmt.Errorf("no environment is up there: %w", err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export ")
		if key, value, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			vars[key] = value
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, key := range []string{"PGENV_DIR", "DOCKER_HOST", "DOCKER_CONFIG", "CONTAINERD_ADDRESS", "REGISTRY",
		"PGENV_TOOLS", "DOCKER29_HOST", "CONTAINERD2_ADDRESS", "DOCKERD29_PID_FILE", "CONTAINERD2_PID_FILE"} {
		if vars[key] == "" {
			return nil, fmt.Errorf("%s/env does not set %s", dir, key)
		}
	}
	return &Env{
		Dir:               vars["PGENV_DIR"],
		DockerHost:        vars["DOCKER_HOST"],
		ContainerdAddress: vars["CONTAINERD_ADDRESS"],
		DockerNamespace:   vars["DOCKER_CONTAINERD_NAMESPACE"],
		Registry:          vars["REGISTRY"],
		Tools:             vars["PGENV_TOOLS"],
		Engine:            debian12,
		vars:              vars,
	}, nil
}

// Environ is os.Environ() pointed at this environment: the docker CLI, ctr and pullguard's
// defaults then reach the private daemons, never the host's, whatever the caller's shell set.
func (e *Env) Environ() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		key, _, _ := strings.Cut(kv, "=")
		_, ours := e.vars[key]
		return ours || key == "DOCKER_CONTEXT" || key == "DOCKER_TLS_VERIFY" ||
			key == "DOCKER_CERT_PATH" || key == "CONTAINERD_NAMESPACE"
	})
	for key, value := range e.vars {
		env = append(env, key+"="+value)
	}
	return env
}

// Ref names an image in the environment's registry: Ref("approved/busybox:1.0") is
// "127.0.0.1:PORT/approved/busybox:1.0". testenv.sh seed pushes approved/busybox:{1.0,1.1,latest},
// myorg-base:1.0, myorg/base:1.0 and library/nginx:1.25 (one image), and evil/miner:{latest,1.0}
// (another image, with a different ID).
func (e *Env) Ref(name string) string { return e.Registry + "/" + name }

// Docker runs the docker CLI against the private dockerd and returns its trimmed stdout; it
// fails the test if the command fails.
func (e *Env) Docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.DockerErr(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// DockerErr is Docker for commands that may fail (a pull pullguard blocks): the error carries
// the command's stderr.
func (e *Env) DockerErr(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return e.run("docker", args...)
}

// Ctr runs `ctr --address CONTAINERD_ADDRESS --namespace NS args...` and returns its trimmed
// stdout; it fails the test if the command fails.
func (e *Env) Ctr(t testing.TB, namespace string, args ...string) string {
	t.Helper()
	out, err := e.CtrErr(t, namespace, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// CtrErr is Ctr for commands that may fail.
func (e *Env) CtrErr(t testing.TB, namespace string, args ...string) (string, error) {
	t.Helper()
	return e.run(e.ctrBin(), append([]string{"--address", e.ContainerdAddress, "--namespace", namespace}, args...)...)
}

func (e *Env) run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = e.Environ()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := strings.TrimSpace(stdout.String())
	if err != nil {
		return out, fmt.Errorf("%s %s: %w\nstderr: %s\nstdout: %s",
			name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()), out)
	}
	return out, nil
}

// Image is what `docker image inspect` says about an image.
type Image struct {
	ID          string   `json:"Id"`
	RepoTags    []string `json:"RepoTags"`
	RepoDigests []string `json:"RepoDigests"`
}

// InspectImage returns the image ref names in the private dockerd; ok is false if there is no
// such image. Any other failure fails the test.
func (e *Env) InspectImage(t testing.TB, ref string) (img Image, ok bool) {
	t.Helper()
	out, err := e.DockerErr(t, "image", "inspect", "--format", "{{json .}}", ref)
	// Docker 29's containerd store, when the image's records changed while it looked them
	// up (a name being removed): it says to ask again.
	for try := 0; err != nil && try < 5 && strings.Contains(err.Error(), "data changed during operation, retry"); try++ {
		time.Sleep(pollInterval)
		out, err = e.DockerErr(t, "image", "inspect", "--format", "{{json .}}", ref)
	}
	if err != nil {
		msg := strings.ToLower(err.Error())
		if strings.Contains(msg, "no such image") {
			return Image{}, false
		}
		// Docker 29's containerd store, while an image is being removed: the name is
		// still listed but its content is gone already. It is on its way out.
		if strings.Contains(msg, "failed to read image config") && strings.Contains(msg, "not found") {
			return Image{}, false
		}
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &img); err != nil {
		t.Fatalf("docker image inspect %s: %v in %q", ref, err, out)
	}
	return img, true
}

// ImageExists reports whether ref names an image in the private dockerd.
func (e *Env) ImageExists(t testing.TB, ref string) bool {
	t.Helper()
	_, ok := e.InspectImage(t, ref)
	return ok
}

// ImageIDs lists the IDs (sha256:...) of all images in the private dockerd, sorted.
func (e *Env) ImageIDs(t testing.TB) []string {
	t.Helper()
	return sortedFields(e.Docker(t, "image", "ls", "--all", "--quiet", "--no-trunc"))
}

// CtrImages lists the image names in a namespace of the private containerd, sorted.
func (e *Env) CtrImages(t testing.TB, namespace string) []string {
	t.Helper()
	return sortedFields(e.Ctr(t, namespace, "images", "ls", "--quiet"))
}

// DockerdPID is the process ID of the environment's dockerd (it changes when a test restarts
// dockerd).
func (e *Env) DockerdPID(t testing.TB) int {
	t.Helper()
	return e.pidFrom(t, "DOCKERD_PID_FILE", "dockerd")
}

// ContainerdPID is the process ID of the stack's containerd.
func (e *Env) ContainerdPID(t testing.TB) int {
	t.Helper()
	return e.pidFrom(t, "CONTAINERD_PID_FILE", "containerd")
}

// pidFrom reads the process ID in the pid file the environment variable key names.
func (e *Env) pidFrom(t testing.TB, key, what string) int {
	t.Helper()
	b, err := os.ReadFile(e.vars[key])
	if err != nil {
		t.Fatalf("%s's pid file: %v", what, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s's pid file: %v", what, err)
	}
	return pid
}

// Reset removes every container and image from the stack's dockerd and containerd, so the
// next test starts from empty stores (the registry keeps the seeded images).
func (e *Env) Reset(t testing.TB) {
	t.Helper()
	if e.Engine.Modern {
		// CRI's pods first: CRI keeps its own record of sandboxes and would restart them.
		e.Crictl(t, "rmp", "--all", "--force")
	}
	if ids := sortedFields(e.Docker(t, "ps", "--all", "--quiet")); len(ids) > 0 {
		e.Docker(t, append([]string{"rm", "--force"}, ids...)...)
	}
	if ids := e.ImageIDs(t); len(ids) > 0 {
		e.Docker(t, append([]string{"rmi", "--force"}, ids...)...)
	}
	for _, ns := range sortedFields(e.Ctr(t, "default", "namespaces", "ls", "--quiet")) {
		for _, task := range sortedFields(e.Ctr(t, ns, "tasks", "ls", "--quiet")) {
			e.Ctr(t, ns, "tasks", "rm", "--force", task)
		}
		if ids := sortedFields(e.Ctr(t, ns, "containers", "ls", "--quiet")); len(ids) > 0 {
			e.Ctr(t, ns, append([]string{"containers", "rm"}, ids...)...)
		}
		if refs := e.CtrImages(t, ns); len(refs) > 0 {
			e.Ctr(t, ns, append([]string{"images", "rm"}, refs...)...)
		}
	}
}

// Crictl runs crictl against the stack's containerd (2.4.2 only: 1.6 runs without CRI here).
func (e *Env) Crictl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.CrictlErr(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// CrictlErr is Crictl for commands that may fail.
func (e *Env) CrictlErr(t testing.TB, args ...string) (string, error) {
	t.Helper()
	if !e.Engine.Modern {
		t.Fatalf("crictl: %s runs without CRI in this environment", e.Engine.Containerd)
	}
	sock := "unix://" + e.ContainerdAddress
	return e.run(e.Tool("crictl"), append([]string{"--runtime-endpoint", sock, "--image-endpoint", sock,
		"--timeout", "60s"}, args...)...)
}

func sortedFields(s string) []string {
	fields := strings.Fields(s)
	slices.Sort(fields)
	return slices.Compact(fields)
}
