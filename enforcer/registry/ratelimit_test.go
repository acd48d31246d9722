package registry

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// countingRegistry is an in-memory registry that counts the requests it
// answers.
func countingRegistry(t *testing.T) (host string, requests *atomic.Int64) {
	t.Helper()
	requests = &atomic.Int64{}
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), requests
}

// TestRateLimitPerHost: lookups to one registry are paced at the rate,
// after the burst; another registry has a bucket of its own; a lookup
// that could not get its turn before its deadline fails at once as a
// timeout rather than waiting.
func TestRateLimitPerHost(t *testing.T) {
	hostA, reqA := countingRegistry(t)
	hostB, reqB := countingRegistry(t)
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	for _, h := range []string{hostA, hostB} {
		ref, _ := New(Options{}).Reference(h + "/team/app:1")
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	reqA.Store(0)
	reqB.Store(0)

	const qps, burst, lookups = 20, 4, 6
	c := New(Options{Timeout: 5 * time.Second, QPS: qps, Burst: burst})
	ctx := context.Background()
	start := time.Now()
	for range lookups {
		if ok, err := c.HasManifest(ctx, hostA+"/team/app", d.String()); !ok || err != nil {
			t.Fatalf("HasManifest = %v, %v", ok, err)
		}
	}
	took := time.Since(start)
	n := reqA.Load() // a ping and a HEAD a lookup
	if want := time.Duration(float64(n-burst) / qps * float64(time.Second)); took < want*9/10 {
		t.Errorf("%d requests to one registry took %v, want at least %v at %d a second after a burst of %d", n, took, want, qps, burst)
	}

	// The other registry's bucket is full: its first lookups do not wait.
	start = time.Now()
	if ok, err := c.HasManifest(ctx, hostB+"/team/app", d.String()); !ok || err != nil {
		t.Fatalf("HasManifest at the other registry = %v, %v", ok, err)
	}
	if el := time.Since(start); el > time.Second/qps {
		t.Errorf("the first lookup at another registry waited %v", el)
	}

	// A lookup with less time left than its turn is away fails at once.
	// (The burst of one is the API check; the HEAD's turn is two seconds away.)
	slow := New(Options{Timeout: 5 * time.Second, QPS: 0.5, Burst: 1})
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = slow.HasManifest(short, hostA+"/team/app", d.String())
	if err == nil {
		t.Fatal("a lookup with 100ms left got a turn two seconds away")
	}
	if el := time.Since(start); el > 50*time.Millisecond {
		t.Errorf("gave up after %v, want at once", el)
	}
	if why := Unreachable(err); why != "timed out" {
		t.Errorf("Unreachable = %q (%v), want timed out", why, err)
	}
	if reqB.Load() == 0 {
		t.Error("the other registry was not asked")
	}
}

// TestNoRateLimit: without a QPS nothing is paced (pullguard's commands
// other than the daemon).
func TestNoRateLimit(t *testing.T) {
	c := New(Options{})
	if _, ok := c.transport.(loopbackOnlyHTTP).next.(*perHostLimit); ok {
		t.Error("a client without QPS is paced")
	}
}
