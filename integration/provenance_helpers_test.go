package integration

// Helpers of the provenance tests (provenance_test.go): content made on the host rather than
// pulled (a tarball whose manifest names an approved image, a build context, a plugin), and
// Docker plugins pushed to the environment's registry.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tarEntry is one file of a tarball the tests make: a directory when Dir, a symbolic link when
// Link is set, else a regular file.
type tarEntry struct {
	Name string
	Mode int64
	Data []byte
	Dir  bool
	Link string
}

// tarOf is the tarball of entries, in order.
func tarOf(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, en := range entries {
		h := &tar.Header{Name: en.Name, Mode: en.Mode, ModTime: time.Unix(0, 0)}
		switch {
		case en.Dir:
			h.Typeflag = tar.TypeDir
		case en.Link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, en.Link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(en.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(en.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// saveAs writes a `docker save` tarball of the image src whose manifest names it names
// instead, and returns its path: what an attacker hands to `docker load` to put an approved
// name on other content. It needs src in dockerd, before pullguard guards it.
func saveAs(t testing.TB, e *Env, src string, names ...string) string {
	t.Helper()
	saved := filepath.Join(t.TempDir(), "saved.tar")
	e.Docker(t, "save", "-o", saved, src)
	f, err := os.Open(saved)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", saved, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case "repositories":
			continue // the legacy name list: manifest.json is what dockerd reads
		case "manifest.json":
			var m []map[string]any
			if err := json.Unmarshal(data, &m); err != nil || len(m) != 1 {
				t.Fatalf("manifest.json of docker save: %v (%d images)", err, len(m))
			}
			m[0]["RepoTags"] = names
			if data, err = json.Marshal(m); err != nil {
				t.Fatal(err)
			}
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "renamed.tar")
	if err := os.WriteFile(out, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// serveFile serves the file at path over HTTP on 127.0.0.1 until the test ends, and returns
// its URL: where `POST /images/create?fromSrc=URL` imports from.
func serveFile(t testing.TB, path string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, path)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(path)
}

// dockerfileContext is the tarball of a build context holding only a Dockerfile.
func dockerfileContext(t testing.TB, dockerfile string) []byte {
	t.Helper()
	return tarOf(t, tarEntry{Name: "Dockerfile", Mode: 0o644, Data: []byte(dockerfile)})
}

// classicBuild sends POST /build with the context to dockerd's classic builder (no version=2,
// which would be BuildKit), naming the result tag; it returns the answer. A build that fails
// in a step still answers 200, with the error in the streamed body.
func classicBuild(t testing.TB, raw *rawDocker, tag string, context []byte) rawResponse {
	t.Helper()
	return raw.do(t, "POST", "/build?rm=1&forcerm=1&t="+queryEscape(tag), context,
		[2]string{"Content-Type", "application/x-tar"})
}

func queryEscape(s string) string {
	return strings.NewReplacer(":", "%3A", "/", "%2F", "@", "%40").Replace(s)
}

// pluginBinary is a static program that serves a Docker plugin's socket (it answers every
// call with an empty success), so that `docker plugin enable` succeeds and the plugin runs as
// Docker runs plugins: as root, in Docker's plugin namespace.
var pluginBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pgtest-plugin-")
	if err != nil {
		return "", err
	}
	src := `package main

import (
	"net"
	"net/http"
	"os"
)

func main() {
	_ = os.MkdirAll("/run/docker/plugins", 0o755)
	l, err := net.Listen("unix", "/run/docker/plugins/pg.sock")
	if err != nil {
		os.Exit(1)
	}
	_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.docker.plugins.v1.1+json")
		_, _ = w.Write([]byte("{}"))
	}))
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module pgtestplugin\n\ngo 1.22\n"), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "plugin")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the test plugin: %w\n%s", err, out)
	}
	return bin, nil
})

// pluginFiles is a plugin's directory as `docker plugin create` reads it, as tar entries:
// config.json and a root file system holding the plugin program and marker, which makes the
// plugin's content differ from every other plugin's (dockerd refuses a second plugin whose
// layer it already holds).
func pluginFiles(t testing.TB, marker string) []tarEntry {
	t.Helper()
	bin, err := pluginBinary()
	if err != nil {
		t.Fatal(err)
	}
	prog, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	config := `{"description":"pullguard test plugin","documentation":"none","entrypoint":["/bin/plugin"],` +
		`"interface":{"types":["docker.dummy/1.0"],"socket":"pg.sock"},"network":{"type":"none"}}`
	return []tarEntry{
		{Name: "config.json", Mode: 0o644, Data: []byte(config)},
		{Name: "rootfs/", Mode: 0o755, Dir: true},
		{Name: "rootfs/bin/", Mode: 0o755, Dir: true},
		{Name: "rootfs/bin/plugin", Mode: 0o755, Data: prog},
		{Name: "rootfs/marker", Mode: 0o644, Data: []byte(marker)},
	}
}

// pushPlugin puts a plugin in the environment's registry as ref (host/path:tag) and removes
// the local copy, so that installing it is a pull. Call it before pullguard guards dockerd.
func pushPlugin(t testing.TB, e *Env, ref string) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range pluginFiles(t, UniqueName(t)+ref) {
		p := filepath.Join(dir, f.Name)
		var err error
		if f.Dir {
			err = os.MkdirAll(p, os.FileMode(f.Mode))
		} else {
			err = os.WriteFile(p, f.Data, os.FileMode(f.Mode))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	e.Docker(t, "plugin", "create", ref, dir)
	e.Docker(t, "plugin", "push", ref)
	e.Docker(t, "plugin", "rm", "--force", ref)
}

// pauseRegistry stops the environment's registry with SIGSTOP until the test ends: it accepts
// connections and never answers, the worst kind of unreachable (every call must time out).
func pauseRegistry(t testing.TB, e *Env) {
	t.Helper()
	pid := registryPID(t, e)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP to the registry (%d): %v", pid, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
}

// registryPID is the process ID of the environment's registry.
func registryPID(t testing.TB, e *Env) int {
	t.Helper()
	return e.pidFrom(t, "REGISTRY_PID_FILE", "the registry")
}

// Plugin is what `GET /plugins` says about an installed plugin.
type Plugin struct {
	ID              string `json:"Id"`
	Name            string
	PluginReference string
	Enabled         bool
}

// plugins lists the plugins installed in the environment's dockerd, in one listing (a plugin
// pullguard removes meanwhile must not fail the test).
func plugins(t testing.TB, e *Env) []Plugin {
	t.Helper()
	out := e.Docker(t, "plugin", "ls", "--no-trunc", "--format", "{{.ID}}\t{{.Name}}\t{{.Enabled}}\t{{.PluginReference}}")
	var list []Plugin
	for line := range strings.Lines(out) {
		f := strings.Split(strings.TrimRight(line, "\n"), "\t")
		if len(f) != 4 {
			t.Fatalf("docker plugin ls line %q", line)
		}
		list = append(list, Plugin{ID: f[0], Name: f[1], Enabled: f[2] == "true", PluginReference: f[3]})
	}
	return list
}

// findPlugin is the installed plugin named name, if any.
func findPlugin(t testing.TB, e *Env, name string) (Plugin, bool) {
	t.Helper()
	for _, p := range plugins(t, e) {
		if p.Name == name {
			return p, true
		}
	}
	return Plugin{}, false
}

// removePluginsAtEnd removes every plugin from the environment's dockerd when the test ends:
// Env.Reset handles images and containers only.
func removePluginsAtEnd(t testing.TB, e *Env) {
	t.Helper()
	t.Cleanup(func() {
		for _, p := range plugins(t, e) {
			e.Docker(t, "plugin", "rm", "--force", p.ID)
		}
	})
}

// removeImagesAtEnd removes every image when the test ends, before Env.Reset, children
// before parents: a built image's parent cannot go while the child is there, and Reset removes
// all images in one command, which then fails.
func removeImagesAtEnd(t testing.TB, e *Env) {
	t.Helper()
	t.Cleanup(func() {
		if ids := sortedFields(e.Docker(t, "ps", "--all", "--quiet")); len(ids) > 0 {
			e.Docker(t, append([]string{"rm", "--force"}, ids...)...)
		}
		for range 10 {
			ids := e.ImageIDs(t)
			if len(ids) == 0 {
				return
			}
			for _, id := range ids {
				_, _ = e.DockerErr(t, "rmi", "--force", id) // a parent fails until its children are gone
			}
		}
	})
}

// installPlugin runs `docker plugin install` of remote (enabled, every permission granted),
// under the local name alias when it is not empty.
func installPlugin(t testing.TB, e *Env, remote, alias string) error {
	t.Helper()
	args := []string{"plugin", "install", "--grant-all-permissions"}
	if alias != "" {
		args = append(args, "--alias", alias)
	}
	_, err := e.DockerErr(t, append(args, remote)...)
	return err
}

// loadableAs is saveAs of the image src as pulled by the environment's dockerd 20.10, for
// either engine to load: dockerd 20.10's saves carry manifest.json only, which saveAs
// rewrites, while Docker 29's name their images in an OCI index as well. It leaves dockerd
// 20.10 reset; call it before anything else there.
func loadableAs(t testing.TB, src string, names ...string) string {
	t.Helper()
	legacy := theEnv
	legacy.Docker(t, "pull", "-q", src)
	tarball := saveAs(t, legacy, src, names...)
	legacy.Reset(t)
	return tarball
}
