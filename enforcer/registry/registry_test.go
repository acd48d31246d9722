package registry

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestIsLoopback(t *testing.T) {
	for reg, want := range map[string]bool{
		"127.0.0.1:5000": true, "127.0.0.2": true, "127.1.2.3:443": true, "localhost:5000": true,
		"localhost": true, "[::1]:5000": true, "10.0.0.1:5000": false, "192.168.1.2": false,
		"registry.example.com": false, "localhost.evil.io:5000": false, "127.0.0.1.nip.io": false,
	} {
		if got := IsLoopback(reg); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", reg, got, want)
		}
	}
}

// Plain HTTP only where Docker allows it by default: loopback.
func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	c := New(Options{Timeout: time.Second})
	for ref, scheme := range map[string]string{
		"127.0.0.2:5000/a/b:1":        "http",
		"localhost:5000/ab:1":         "http",
		"registry.example.com/a/b:1":  "https",
		"docker.io/library/nginx:1.2": "https",
	} {
		r, err := c.Reference(ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Context().Scheme(); got != scheme {
			t.Errorf("%s: scheme %s, want %s", ref, got, scheme)
		}
	}
	// go-containerregistry would fall back to HTTP for a private address;
	// the transport refuses before anything is sent.
	req, _ := http.NewRequest(http.MethodGet, "http://10.1.2.3:5000/v2/", nil)
	if _, err := c.transport.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "refusing plain HTTP to 10.1.2.3:5000") {
		t.Errorf("plain HTTP to a private address: %v", err)
	}
}

func TestResolveAndHasManifest(t *testing.T) {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	c := New(Options{Timeout: 5 * time.Second})
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := c.Reference(host + "/team/app:1.0")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	ctx := context.Background()
	got, err := c.Resolve(ctx, host+"/team/app:1.0")
	if err != nil || got != want.String() {
		t.Fatalf("Resolve = %s, %v; want %s", got, err, want)
	}
	if ok, err := c.HasManifest(ctx, host+"/team/app", want.String()); !ok || err != nil {
		t.Errorf("HasManifest(pushed) = %v, %v", ok, err)
	}
	other := "sha256:" + strings.Repeat("0", 64)
	if ok, err := c.HasManifest(ctx, host+"/team/app", other); ok || err != nil {
		t.Errorf("HasManifest(absent) = %v, %v; want a definite false", ok, err)
	}
	if _, err := c.Resolve(ctx, host+"/team/app:nope"); !IsNotFound(err) {
		t.Errorf("Resolve(absent tag) = %v, want not found", err)
	}

	srv.Close()
	_, err = c.HasManifest(ctx, host+"/team/app", want.String())
	if err == nil || IsNotFound(err) {
		t.Fatalf("registry gone: HasManifest error %v, want a failure that is not 'not found'", err)
	}
	if why := Unreachable(err); why != "connection refused" {
		t.Errorf("Unreachable = %q, want connection refused", why)
	}
}

// A registry that accepts the connection and never answers is given up
// on after the timeout, not waited for.
func TestTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	c := New(Options{Timeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := c.Resolve(context.Background(), strings.TrimPrefix(srv.URL, "http://")+"/ab:1")
	if err == nil {
		t.Fatal("resolved against a registry that never answers")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("gave up after %v, want about the 300ms timeout", el)
	}
	if why := Unreachable(err); why != "timed out" {
		t.Errorf("Unreachable = %q (%v), want timed out", why, err)
	}
}
