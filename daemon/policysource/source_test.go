package policysource

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/pullguard/pullguard/daemon"
	"github.com/pullguard/pullguard/enforcer/registry"
)

// testRegistry is an in-memory registry on a loopback port; its address.
func testRegistry(t *testing.T) (addr string, stop func()) {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), srv.Close
}

// writeKey writes a new ECDSA P-256 public key, as cosign.pub holds one.
func writeKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// policyDir writes a policy directory with a drop-in and a key it names.
func policyDir(t *testing.T, mode string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "policy.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for rel, content := range map[string]string{
		"policy.yaml":      "mode: " + mode + "\nallow:\n  - image: registry.example/approved/**\n",
		"policy.d/10.yaml": "deny:\n  - image: registry.example/evil/**\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newTestSource(t *testing.T, source, key, state string) (*Source, *logtest.Hook) {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	s, err := New(Options{Source: source, Keys: []string{key}, StateDir: state, Log: logger,
		Registry: registry.New(registry.Options{Timeout: 2 * time.Second})})
	if err != nil {
		t.Fatal(err)
	}
	return s, hook
}

func TestPushAndDownload(t *testing.T) {
	addr, _ := testRegistry(t)
	reg := registry.New(registry.Options{})
	dir := policyDir(t, "enforce")
	src := "oci://" + addr + "/pullguard/policy:prod"
	digest, err := Push(context.Background(), reg, dir, src)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Push(context.Background(), reg, dir, "oci://"+addr+"/pullguard/policy:staging")
	if err != nil || again != digest {
		t.Fatalf("pushing the same directory again: %s, %v; want %s", again, err, digest)
	}
	s, _ := newTestSource(t, src, writeKey(t), filepath.Join(t.TempDir(), "state"))
	files, raw, err := s.download(context.Background(), digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].path != "policy.d/10.yaml" || files[1].path != "policy.yaml" {
		t.Fatalf("downloaded %+v", files)
	}
	if err := s.store.unpack(digest, raw, files); err != nil {
		t.Fatal(err)
	}
	if err := s.store.check(digest); err != nil {
		t.Fatalf("the unpacked artifact does not check: %v", err)
	}
	st, err := os.Stat(s.store.mainFile(digest))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("unpacked policy.yaml: %v, mode %v; want 0600", err, st.Mode())
	}
}

func TestPushRefuses(t *testing.T) {
	addr, _ := testRegistry(t)
	reg := registry.New(registry.Options{})
	bad := policyDir(t, "enforce")
	if err := os.WriteFile(filepath.Join(bad, "policy.d", "20.yaml"), []byte("allow:\n  - image: x\n    tagz: [1]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	outside := policyDir(t, "enforce")
	if err := os.WriteFile(filepath.Join(outside, "policy.d", "20.yaml"), []byte(fmt.Sprintf("allow:\n  - image: x/y\n    signed-by:\n      - key: %s\n", writeKey(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ dir, target, want string }{
		"a key outside the directory": {outside, "oci://" + addr + "/pol:1", "20.yaml:4: key "},
		"an invalid policy":           {bad, "oci://" + addr + "/pol:1", "20.yaml:3:"},
		"a digest target":             {policyDir(t, "audit"), "oci://" + addr + "/pol@sha256:" + strings.Repeat("a", 64), "push to a tag"},
		"no scheme":                   {policyDir(t, "audit"), addr + "/pol:1", "expected oci://"},
	} {
		if _, err := Push(context.Background(), reg, c.dir, c.target); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
}

// keep unpacks and records an artifact as the last good one, as a run
// that verified it would have.
func keep(t *testing.T, s *Source, dir, key string) string {
	t.Helper()
	files, err := readDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := manifestFor(files)
	digest := descriptorOf("", raw, nil).Digest.String()
	if err := s.store.unpack(digest, raw, files); err != nil {
		t.Fatal(err)
	}
	fp := ""
	for _, k := range s.keys.Keys {
		fp = k.Fingerprint
	}
	if key != "" {
		fp = key
	}
	if err := s.store.writeRecord(record{Source: s.name, Digest: digest, Key: fp, Fetched: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return digest
}

func TestStartWithoutTheRegistryUsesTheKeptPolicy(t *testing.T) {
	addr, stop := testRegistry(t)
	stop()
	s, hook := newTestSource(t, "oci://"+addr+"/pullguard/policy:prod", writeKey(t), filepath.Join(t.TempDir(), "state"))
	digest := keep(t, s, policyDir(t, "enforce"), "")
	in, err := s.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if in.Path != s.store.mainFile(digest) || in.Origin[daemon.FieldPolicyDigest] != digest {
		t.Errorf("started with %s %v, want the kept %s", in.Path, in.Origin, digest)
	}
	if e, _ := in.Origin[daemon.FieldError].(string); !strings.Contains(e, "cannot reach") {
		t.Errorf("the start entry's PULLGUARD_ERROR = %q, want why the source was not checked", e)
	}
	if w := s.Warnings(); len(w) != 1 || !strings.Contains(w[0], "enforcing the last verified policy, artifact "+digest) {
		t.Errorf("status warnings %q", w)
	}
	last := hook.LastEntry()
	if last == nil || last.Data[daemon.FieldMessageID] != daemon.MessageIDPolicySourceFailed || last.Level != logrus.WarnLevel {
		t.Fatalf("no PolicySourceFailed warning; last entry %+v", last)
	}
	if last.Data[daemon.FieldPolicyDigest] != digest || !strings.Contains(last.Message, "keeping the policy in force (artifact "+digest) {
		t.Errorf("the warning does not name the kept artifact %s: %s %v", digest, last.Message, last.Data)
	}
}

func TestStartRefusesUnsignedAndMisplacedKeptPolicies(t *testing.T) {
	addr, _ := testRegistry(t)
	src := "oci://" + addr + "/pullguard/policy:prod"
	if _, err := Push(context.Background(), registry.New(registry.Options{}), policyDir(t, "enforce"), src); err != nil {
		t.Fatal(err)
	}
	key := writeKey(t)

	// Nothing kept, an unsigned artifact: no policy.
	s, _ := newTestSource(t, src, key, filepath.Join(t.TempDir(), "state"))
	if _, err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "refused: no signature") {
		t.Errorf("unsigned artifact, nothing kept: %v", err)
	}

	// The kept policy is used only if it came from this source, with this
	// key, and is whole on disk.
	for name, setup := range map[string]func(s *Source) string{
		"another source": func(s *Source) string {
			d := keep(t, s, policyDir(t, "audit"), "")
			rec, _ := s.store.readRecord()
			rec.Source = "oci://" + addr + "/other:prod"
			_ = s.store.writeRecord(*rec)
			return d
		},
		"another key": func(s *Source) string { return keep(t, s, policyDir(t, "audit"), "sha256:"+strings.Repeat("0", 64)) },
		"a changed file": func(s *Source) string {
			d := keep(t, s, policyDir(t, "audit"), "")
			_ = os.WriteFile(s.store.mainFile(d), []byte("mode: audit\ndefault: allow\n"), 0o600)
			return d
		},
		"an added file": func(s *Source) string {
			d := keep(t, s, policyDir(t, "audit"), "")
			_ = os.WriteFile(filepath.Join(s.store.path(d), "policy.d", "99.yaml"), []byte("default: allow\n"), 0o600)
			return d
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, _ := newTestSource(t, src, key, filepath.Join(t.TempDir(), "state"))
			setup(s)
			if in, err := s.Start(context.Background()); err == nil {
				t.Errorf("started with %s", in.Path)
			}
		})
	}
}

func TestStateDirMustBeRootOnly(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := newStore(state); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Errorf("a 0755 state directory: %v", err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	if _, err := newStore(link); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a symlinked state directory: %v", err)
	}
}

func TestPruneKeepsOnlyTheArtifactInForce(t *testing.T) {
	s, _ := newTestSource(t, "oci://127.0.0.1:1/pol:1", writeKey(t), filepath.Join(t.TempDir(), "state"))
	old := keep(t, s, policyDir(t, "audit"), "")
	cur := keep(t, s, policyDir(t, "enforce"), "")
	if err := os.Mkdir(filepath.Join(s.store.dir, ".unpack-123"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.store.prune(cur); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(s.store.dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := recordName + " " + cur; strings.Join(names, " ") != want {
		t.Errorf("after prune: %v, want %s (not %s)", names, want, old)
	}
}
