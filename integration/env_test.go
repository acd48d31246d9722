package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

// Env is one private runtime environment, as described by DIR/env (see testenv.sh).
type Env struct {
	Dir               string // PGENV_DIR: everything of the environment lives below it
	DockerHost        string // DOCKER_HOST: unix:// address of the private dockerd
	ContainerdAddress string // CONTAINERD_ADDRESS: socket path of the private containerd
	DockerNamespace   string // containerd namespace of Docker's containers ("moby")
	Registry          string // REGISTRY: 127.0.0.1:PORT, a plain-HTTP registry holding the seeded images
	vars              map[string]string
}

// RequireEnv returns the environment, or skips the test or benchmark when integration tests
// cannot run here. It also resets the runtimes when the test ends, so each test starts with
// no containers and no images.
func RequireEnv(t testing.TB) *Env {
	t.Helper()
	if theEnv == nil {
		t.Skip(skipReason)
	}
	t.Cleanup(func() { theEnv.Reset(t) })
	return theEnv
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
	for _, key := range []string{"PGENV_DIR", "DOCKER_HOST", "DOCKER_CONFIG", "CONTAINERD_ADDRESS", "REGISTRY"} {
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
	return e.run("ctr", append([]string{"--address", e.ContainerdAddress, "--namespace", namespace}, args...)...)
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
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "no such image") {
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
	b, err := os.ReadFile(e.vars["DOCKERD_PID_FILE"])
	if err != nil {
		t.Fatalf("dockerd's pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("dockerd's pid file: %v", err)
	}
	return pid
}

// Reset removes every container and image from the private dockerd and containerd, so the
// next test starts from empty stores (the registry keeps the seeded images).
func (e *Env) Reset(t testing.TB) {
	t.Helper()
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

func sortedFields(s string) []string {
	fields := strings.Fields(s)
	slices.Sort(fields)
	return slices.Compact(fields)
}
