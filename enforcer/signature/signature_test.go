package signature

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/policy"
)

func TestCacheLifetimes(t *testing.T) {
	c := newCache(8)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	calls := 0
	answer := policy.SignatureResult{Status: policy.SignatureMissing}
	get := func() policy.SignatureResult {
		return c.get("k", func() policy.SignatureResult { calls++; return answer })
	}
	get()
	get()
	if calls != 1 {
		t.Fatalf("a cached answer was computed %d times", calls)
	}
	now = now.Add(31 * time.Second)
	answer = policy.SignatureResult{Status: policy.SignatureVerified}
	if get().Status != policy.SignatureVerified || calls != 2 {
		t.Fatalf("a negative answer outlived its 30s lifetime (calls %d)", calls)
	}
	now = now.Add(59 * time.Minute)
	if get(); calls != 2 {
		t.Error("a verified answer was dropped before its hour")
	}
	now = now.Add(2 * time.Minute)
	if get(); calls != 3 {
		t.Error("a verified answer outlived its hour")
	}
}

func TestCacheBounded(t *testing.T) {
	c := newCache(4)
	for i := 0; i < 100; i++ {
		c.get(strings.Repeat("k", i+1), func() policy.SignatureResult { return policy.SignatureResult{Status: policy.SignatureVerified} })
	}
	if n := len(c.cur) + len(c.old); n > 8 {
		t.Errorf("cache holds %d entries, bound is two generations of 4", n)
	}
}

// Concurrent questions about one digest make one registry round.
func TestCacheSharesInFlight(t *testing.T) {
	c := newCache(8)
	var calls atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.get("k", func() policy.SignatureResult {
				calls.Add(1)
				<-release
				return policy.SignatureResult{Status: policy.SignatureInvalid}
			})
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("%d registry rounds for one question", n)
	}
}

func signedPolicy(t testing.TB, host string) *policy.Policy {
	t.Helper()
	p, err := policy.LoadFiles([]string{writePolicy(t, host)}, policy.LoadOptions{InsecurePermissions: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writePolicy(t testing.TB, host string) string {
	t.Helper()
	dir := t.TempDir()
	yaml := "mode: enforce\nallow:\n  - image: " + host + "/signed/**\n    signed-by:\n      - key: " + keyPath(t) + "\n  - image: " + host + "/open/**\n" +
		"  - image: " + host + "/elsewhere/**\n    signed-by:\n      - key: " + keyPath(t) + "\n    signature-repository: " + host + "/signatures\n"
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "policy.yaml")
}

func keyPath(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs("../../policy/testdata/keys/ecdsa-p256.pub")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var testNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func TestDecideOffline(t *testing.T) {
	p := signedPolicy(t, "registry.example.com")
	d := Decide(context.Background(), nil, p, "registry.example.com/signed/app:1", testNow)
	if d.Allowed || !strings.HasSuffix(d.Reason, ", but "+ReasonOffline) || d.Signature.Result.Field() != "unverifiable" {
		t.Errorf("offline: allowed=%v %q", d.Allowed, d.Reason)
	}
	if d.Input != "registry.example.com/signed/app:1" {
		t.Errorf("input = %q", d.Input)
	}
	if d := Decide(context.Background(), nil, p, "registry.example.com/open/app:1", testNow); !d.Allowed || d.Signature != nil {
		t.Errorf("a rule without signed-by needs no registry: allowed=%v %q", d.Allowed, d.Reason)
	}
}

// Against a registry holding the image but no signature: missing; with the
// registry gone: unverifiable, never allowed.
func TestDecideAgainstRegistry(t *testing.T) {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	reg := registry.New(registry.Options{Timeout: 2 * time.Second})
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := reg.Reference(host + "/signed/app:1.0")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	dig, _ := img.Digest()
	p := signedPolicy(t, host)
	v := New(reg)

	d := Decide(context.Background(), v, p, host+"/signed/app:1.0", testNow)
	wantRef := host + "/signed/app:1.0@" + dig.String()
	if d.Allowed || d.Reference != wantRef || d.Signature.Result.Status != policy.SignatureMissing {
		t.Fatalf("unsigned: allowed=%v ref=%s status=%s %q", d.Allowed, d.Reference, d.Signature.Result.Status, d.Reason)
	}
	if !strings.HasSuffix(d.Reason, "but no signature for "+dig.String()+" in "+host+"/signed/app") {
		t.Errorf("reason %q", d.Reason)
	}

	// Under a rule with signature-repository, the signatures of the same
	// content are looked for there, not beside the image.
	ref2, _ := reg.Reference(host + "/elsewhere/app:1.0")
	if err := remote.Write(ref2, img); err != nil {
		t.Fatal(err)
	}
	d = Decide(context.Background(), v, p, host+"/elsewhere/app:1.0", testNow)
	if d.Allowed || !strings.HasSuffix(d.Reason, "but no signature for "+dig.String()+" in "+host+"/signatures") {
		t.Errorf("signature-repository: allowed=%v %q, want no signature in %s/signatures", d.Allowed, d.Reason, host)
	}

	d = Decide(context.Background(), v, p, host+"/signed/app:nope", testNow)
	if d.Allowed || !strings.Contains(d.Reason, "does not exist at the registry") {
		t.Errorf("absent tag: allowed=%v %q", d.Allowed, d.Reason)
	}

	srv.Close()
	v = New(reg) // nothing cached
	for _, in := range []string{host + "/signed/app:1.0", host + "/signed/app@" + dig.String()} {
		d = Decide(context.Background(), v, p, in, testNow)
		if d.Allowed || d.Signature.Result.Status != policy.SignatureUnverifiable || !strings.Contains(d.Reason, "connection refused") {
			t.Errorf("%s, registry gone: allowed=%v %s %q", in, d.Allowed, d.Signature.Result.Status, d.Reason)
		}
	}
}
