package integration

// Helpers of the kept-verdicts tests and benchmark (verdicts_test.go, verdicts_bench_test.go):
// a registry that logs every request it answers, images pushed there, and containerd image
// records of them, as a host that pulled them holds.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	godigest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// startLoggedRegistry starts Debian's docker-registry on a loopback port with its access log on:
// one line a request it answers, in its log file.
func startLoggedRegistry(t testing.TB) *privateRegistry {
	t.Helper()
	dir := t.TempDir()
	r := &privateRegistry{conf: filepath.Join(dir, "config.yml"), log: filepath.Join(dir, "registry.log"), auth: authn.Anonymous}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = l.Addr().String()
	l.Close()
	writeTestFile(t, r.conf, fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
`, filepath.Join(dir, "storage"), r.addr))
	r.start(t)
	t.Cleanup(func() { r.stop(t) })
	return r
}

// registryRequests are the requests the registry's access log shows from offset on (a byte
// offset into the log), and the log's size now.
func registryRequests(t testing.TB, r *privateRegistry, offset int64) (requests []string, size int64) {
	t.Helper()
	data, err := os.ReadFile(r.log)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data[min(offset, int64(len(data))):]), "\n") {
		// The combined log format: ... "METHOD /path HTTP/1.1" status size ...
		if _, rest, ok := strings.Cut(line, `"`); ok {
			if req, _, ok := strings.Cut(rest, ` HTTP/`); ok && strings.Contains(req, " /v2/") {
				requests = append(requests, req)
			}
		}
	}
	return requests, int64(len(data))
}

// heldImage is one image the host holds: its record's name and target.
type heldImage struct {
	name string
	desc ocispec.Descriptor
}

// pushImages pushes n small random images to the registry as REPO-i:1 (distinct content each)
// and returns them.
func pushImages(t testing.TB, r *privateRegistry, repo string, n int) []heldImage {
	t.Helper()
	out := make([]heldImage, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			img, err := random.Image(64, 1)
			if err != nil {
				errs <- err
				return
			}
			ref := fmt.Sprintf("%s/%s-%d:1", r.addr, repo, i)
			nref, err := name.ParseReference(ref, name.Insecure)
			if err != nil {
				errs <- err
				return
			}
			if err := remote.Write(nref, img); err != nil {
				errs <- fmt.Errorf("pushing %s: %w", ref, err)
				return
			}
			d, _ := img.Digest()
			size, _ := img.Size()
			mt, _ := img.MediaType()
			out[i] = heldImage{name: ref, desc: ocispec.Descriptor{MediaType: string(mt), Digest: godigest.Digest(d.String()), Size: size}}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return out
}

// holdImages creates containerd image records of imgs in namespace ns through containerd's API,
// as a pull leaves them (pullguard reads a record's name and target, not its layers), and
// removes them and the namespace when the test ends.
func holdImages(t testing.TB, e *Env, ns string, imgs []heldImage) {
	t.Helper()
	c, err := client.New(e.ContainerdAddress)
	if err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), ns)
	t.Cleanup(func() {
		defer c.Close()
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), time.Minute)
		defer cancel()
		for _, img := range imgs {
			_ = c.ImageService().Delete(ctx, img.name)
		}
		_ = c.NamespaceService().Delete(ctx, ns)
	})
	for _, img := range imgs {
		if _, err := c.ImageService().Create(ctx, images.Image{Name: img.name, Target: img.desc}); err != nil {
			t.Fatalf("creating the record %s: %v", img.name, err)
		}
	}
}

// localDenyPolicy allows REGISTRY/approved/** under local-images: deny: containerd's records
// prove nothing, so pullguard asks the registry where each image's content came from.
func localDenyPolicy(r *privateRegistry) string {
	return fmt.Sprintf("mode: enforce\nlocal-images: deny\nallow:\n  - image: %s/approved/**\n", r.addr)
}

// startedAfter is how long the daemon took from its start to the journal entry saying it
// started (after every runtime's first reconcile, when it sends READY=1).
func startedAfter(t testing.TB, p *Pullguard, deadline time.Duration) time.Duration {
	t.Helper()
	e := p.WaitEntry(t, deadline, "MESSAGE_ID="+msgStarted)
	var us int64
	if _, err := fmt.Sscan(e["__REALTIME_TIMESTAMP"], &us); err != nil {
		t.Fatal(err)
	}
	return time.UnixMicro(us).Sub(p.since)
}
