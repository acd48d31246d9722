package integration

// Signature requirements (signed-by) end to end, against signatures made by
// the real cosign CLI in a private registry of this test's own (so that it
// can be stopped mid-test without disturbing the others).

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/enforcer/signature"
	"github.com/pullguard/pullguard/policy"
)

// sigFixtures is a registry holding images signed every way the tests need.
type sigFixtures struct {
	reg        *privateRegistry
	allowedKey string // cosign.pub of the key the policy lists
	otherKey   string // cosign.pub of a key it does not
	// public keys of other types, imported into cosign, by image
	typedKeys map[string]string
	trustRoot string // an empty trusted root: cosign never asks the public Sigstore TUF repository
	// digests by image name (repository:tag below the registry)
	digests map[string]string
}

// The fixture images, repository:tag below the registry.
const (
	imgClassic      = "signed/classic:1.0"   // signed by the allowed key, classic .sig format
	imgBundle       = "signed/bundle:1.0"    // signed by the allowed key, Sigstore bundle (referrers tag)
	imgOtherKey     = "signed/otherkey:1.0"  // signed by another key
	imgUnsigned     = "signed/unsigned:1.0"  // no signature
	imgMoved        = "signed/classic:moved" // carries imgClassic's classic signature under its own .sig tag
	imgMovedBundle  = "signed/bundle:moved"  // carries imgBundle's bundle under its own referrers tag
	imgOpen         = "open/app:1.0"         // under a rule without signed-by
	imgAttested     = "signed/attested:1.0"  // no signature, but an SBOM-like attestation by the allowed key (bundle)
	imgEd25519      = "keys/ed25519:1.0"     // signed by an imported Ed25519 key, classic format
	imgRSA          = "keys/rsa:1.0"         // signed by an imported RSA 3072 key, bundle format
	imgP384         = "keys/p384:1.0"        // signed by an imported ECDSA P-384 key, classic format
	imgStored       = "stored/classic:1.0"   // signed by the allowed key, classic format, kept in sigStore
	imgStoredBundle = "stored/bundle:1.0"    // signed by the allowed key, Sigstore bundle, kept in sigStore
	sigStore        = "signatures/store"     // where cosign kept those two signatures (COSIGN_REPOSITORY)
	cosignSignFlags = "--allow-http-registry --allow-insecure-registry --yes"
)

func (f *sigFixtures) ref(img string) string { return f.reg.addr + "/" + img }

// digestRef is repository@digest of a fixture image.
func (f *sigFixtures) digestRef(img string) string {
	repo, _, _ := strings.Cut(img, ":")
	return f.reg.addr + "/" + repo + "@" + f.digests[img]
}

// cosignBinary is the cosign the test environment built (PGENV_TOOLS).
func cosignBinary(t testing.TB, e *Env) string {
	t.Helper()
	tools := e.vars["PGENV_TOOLS"]
	if tools == "" {
		tools = os.Getenv("PGENV_TOOLS")
	}
	bin := filepath.Join(tools, "cosign")
	if _, err := os.Stat(bin); tools == "" || err != nil {
		msg := "no cosign in PGENV_TOOLS (" + tools + "): integration/testenv.sh install builds it"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

func newSigFixtures(t testing.TB, e *Env) *sigFixtures {
	t.Helper()
	cosign := cosignBinary(t, e)
	dir := t.TempDir()
	f := &sigFixtures{reg: startRegistry(t, ""), digests: map[string]string{}}
	run := func(args ...string) { t.Helper(); cosignRun(t, cosign, dir, nil, args...) }
	for _, k := range []string{"allowed", "other"} {
		run("generate-key-pair", "--output-key-prefix", k)
		if err := os.Chmod(filepath.Join(dir, k+".pub"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.allowedKey, f.otherKey = filepath.Join(dir, "allowed.pub"), filepath.Join(dir, "other.pub")
	// Keys of the other types cosign signs with, made here and imported
	// (cosign generate-key-pair makes only ECDSA P-256).
	f.typedKeys = map[string]string{}
	for img, gen := range map[string]func() (any, error){
		imgEd25519: func() (any, error) { _, k, err := ed25519.GenerateKey(rand.Reader); return k, err },
		imgRSA:     func() (any, error) { return rsa.GenerateKey(rand.Reader, 3072) },
		imgP384:    func() (any, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) },
	} {
		k, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.NewReplacer("/", "-", ":", "-").Replace(img)
		writeTestFile(t, filepath.Join(dir, name+".pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
		run("import-key-pair", "--key", name+".pem", "--output-key-prefix", name)
		if err := os.Chmod(filepath.Join(dir, name+".pub"), 0o644); err != nil {
			t.Fatal(err)
		}
		f.typedKeys[img] = filepath.Join(dir, name+".pub")
	}
	signingConfig := filepath.Join(dir, "signing-config.json")
	f.trustRoot = filepath.Join(dir, "trusted-root.json")
	writeTestFile(t, signingConfig, `{"mediaType":"application/vnd.dev.sigstore.signingconfig.v0.2+json","rekorTlogConfig":{},"tsaConfig":{}}`)
	writeTestFile(t, f.trustRoot, `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)

	for _, img := range []string{imgClassic, imgBundle, imgOtherKey, imgUnsigned, imgMoved, imgMovedBundle, imgOpen, imgAttested, imgEd25519, imgRSA, imgP384, imgStored, imgStoredBundle} {
		f.digests[img] = f.reg.pushRandom(t, img)
	}
	classic := strings.Fields("sign --tlog-upload=false --use-signing-config=false --new-bundle-format=false " + cosignSignFlags)
	bundle := append(strings.Fields("sign --signing-config "+signingConfig+" --trusted-root "+f.trustRoot), strings.Fields(cosignSignFlags)...)
	run(append(classic, "--key", "allowed.key", f.digestRef(imgClassic))...)
	run(append(classic, "--key", "other.key", f.digestRef(imgOtherKey))...)
	run(append(bundle, "--key", "allowed.key", f.digestRef(imgBundle))...)
	writeTestFile(t, filepath.Join(dir, "predicate.json"), `{"components":[]}`)
	run(append(strings.Fields("attest --type https://cyclonedx.org/bom --predicate predicate.json --signing-config "+signingConfig+" --trusted-root "+f.trustRoot+" "+cosignSignFlags),
		"--key", "allowed.key", f.digestRef(imgAttested))...)
	run(append(classic, "--key", "keys-ed25519-1.0.key", f.digestRef(imgEd25519))...)
	run(append(bundle, "--key", "keys-rsa-1.0.key", f.digestRef(imgRSA))...)
	run(append(classic, "--key", "keys-p384-1.0.key", f.digestRef(imgP384))...)
	// Signatures kept in a repository of their own, as a rule's
	// signature-repository names it.
	store := []string{"COSIGN_REPOSITORY=" + f.ref(sigStore)}
	cosignRun(t, cosign, dir, store, append(classic, "--key", "allowed.key", f.digestRef(imgStored))...)
	cosignRun(t, cosign, dir, store, append(bundle, "--key", "allowed.key", f.digestRef(imgStoredBundle))...)

	// A signature moved onto other content: the classic payload and the
	// bundle's statement name the original digest.
	f.reg.copyManifest(t, sigTag(imgClassic, f.digests[imgClassic], ".sig"), sigTag(imgMoved, f.digests[imgMoved], ".sig"))
	f.reg.copyManifest(t, sigTag(imgBundle, f.digests[imgBundle], ""), sigTag(imgMovedBundle, f.digests[imgMovedBundle], ""))

	// cosign itself, not pullguard, confirms what each fixture is.
	verify := func(img, key string, bundleFormat bool, sigRepo string) error {
		args := []string{"verify", "--key", key, "--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry"}
		if bundleFormat {
			args = append(args, "--new-bundle-format", "--trusted-root", f.trustRoot)
		}
		cmd := exec.Command(cosign, append(args, f.digestRef(img))...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, "tuf"))
		if sigRepo != "" {
			cmd.Env = append(cmd.Env, "COSIGN_REPOSITORY="+f.ref(sigRepo))
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
	for _, c := range []struct {
		img     string
		key     string
		bundle  bool
		valid   bool
		sigRepo string
	}{
		{imgClassic, f.allowedKey, false, true, ""},
		{imgBundle, f.allowedKey, true, true, ""},
		{imgOtherKey, f.otherKey, false, true, ""},
		{imgOtherKey, f.allowedKey, false, false, ""},
		{imgUnsigned, f.allowedKey, false, false, ""},
		{imgMoved, f.allowedKey, false, false, ""},
		{imgMovedBundle, f.allowedKey, true, false, ""},
		{imgRSA, f.typedKeys[imgRSA], true, true, ""},
		{imgStored, f.allowedKey, false, true, sigStore},
		{imgStored, f.allowedKey, false, false, ""}, // not beside the image
		{imgStoredBundle, f.allowedKey, true, true, sigStore},
		// Not imgEd25519 and imgP384: cosign v3.1.3 signs them with
		// Ed25519ph and SHA-384 but `cosign verify --key` checks with pure
		// Ed25519 and SHA-256 (and has no flag to say otherwise), so it
		// rejects its own signatures. pullguard verifies them below; the
		// other-key and moved-signature cases are the negative controls.
	} {
		if err := verify(c.img, c.key, c.bundle, c.sigRepo); (err == nil) != c.valid {
			t.Fatalf("fixture %s: cosign verify --key %s: %v, want valid=%v", c.img, filepath.Base(c.key), err, c.valid)
		}
	}
	return f
}

// cosignRun runs the cosign CLI in dir with env added to the test's own.
func cosignRun(t testing.TB, cosign, dir string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(cosign, args...)
	cmd.Dir = dir
	// No password on the test keys; no TUF cache or config from $HOME.
	cmd.Env = append(append(os.Environ(), "COSIGN_PASSWORD=", "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, "tuf")), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// sigTag is the repository:tag cosign uses for a digest's signatures:
// sha256-<hex>.sig (classic) or sha256-<hex> (the referrers tag).
func sigTag(img, digest, suffix string) string {
	repo, _, _ := strings.Cut(img, ":")
	return repo + ":" + strings.Replace(digest, ":", "-", 1) + suffix
}

func writeTestFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// privateRegistry is Debian's docker-registry on a loopback port.
type privateRegistry struct {
	addr string
	conf string
	log  string // the registry's log; it logs every 404 at error level
	cmd  *exec.Cmd
	// auth is what the test itself pushes with.
	auth authn.Authenticator
}

// startRegistry starts a registry; extraConfig is added to its
// configuration (an auth: section).
func startRegistry(t testing.TB, extraConfig string) *privateRegistry {
	t.Helper()
	dir := t.TempDir()
	r := &privateRegistry{conf: filepath.Join(dir, "config.yml"), log: filepath.Join(dir, "registry.log"), auth: authn.Anonymous}
	// A free port: the kernel picks one, which is released for the registry.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = l.Addr().String()
	l.Close()
	writeTestFile(t, r.conf, fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
%s`, filepath.Join(dir, "storage"), r.addr, extraConfig))
	r.start(t)
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *privateRegistry) start(t testing.TB) {
	t.Helper()
	r.cmd = exec.Command("docker-registry", "serve", r.conf)
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, func() (bool, string) {
		resp, err := http.Get("http://" + r.addr + "/v2/")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		// 401: up, and asking for credentials.
		return resp.StatusCode == 200 || resp.StatusCode == 401, "GET /v2/: " + resp.Status
	})
}

func (r *privateRegistry) stop(t testing.TB) {
	t.Helper()
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// pushRandom pushes a small random image (content is not what these tests
// judge) and returns its manifest digest.
func (r *privateRegistry) pushRandom(t testing.TB, img string) string {
	t.Helper()
	image, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.addr+"/"+img, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, image, remote.WithAuth(r.auth)); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := image.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// copyManifest copies what from names (an image or an index) to to,
// unchanged: moving a signature, not making one.
func (r *privateRegistry) copyManifest(t testing.TB, from, to string) {
	t.Helper()
	src, err := name.ParseReference(r.addr+"/"+from, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := name.ParseReference(r.addr+"/"+to, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(src)
	if err != nil {
		t.Fatalf("reading %s: %v", src, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err == nil {
			err = remote.WriteIndex(dst, idx)
		}
		if err != nil {
			t.Fatalf("copying %s to %s: %v", src, dst, err)
		}
		return
	}
	img, err := desc.Image()
	if err == nil {
		err = remote.Write(dst, img)
	}
	if err != nil {
		t.Fatalf("copying %s to %s: %v", src, dst, err)
	}
}

// signaturePolicy requires the allowed key under signed/** and nothing
// under open/**.
func (f *sigFixtures) policy(t testing.TB) string {
	return WritePolicy(t, "", fmt.Sprintf(`mode: enforce
allow:
  - image: %[1]s/signed/**
    signed-by:
      - key: %[2]s
  - image: %[1]s/open/**
  - image: %[1]s/keys/**
    signed-by:
      - key: %[3]s
      - key: %[4]s
      - key: %[5]s
  - image: %[1]s/stored/**
    signed-by:
      - key: %[2]s
    signature-repository: %[1]s/%[6]s
`, f.reg.addr, f.allowedKey, f.typedKeys[imgEd25519], f.typedKeys[imgRSA], f.typedKeys[imgP384], sigStore))
}

type checkLine struct {
	Input     string `json:"input"`
	Reference string `json:"reference"`
	Allowed   bool   `json:"allowed"`
	Rule      string `json:"rule"`
	Reason    string `json:"reason"`
	Signature string `json:"signature"`
	// Attestation is where an attestations rule decided (attest_test.go).
	Attestation string `json:"attestation"`
}

func runCheck(t *testing.T, bin, policyPath string, extra []string, refs ...string) (map[string]checkLine, int) {
	t.Helper()
	return runCheckEnv(t, bin, policyPath, nil, extra, refs...)
}

// runCheckEnv is runCheck with env added to the test's environment.
func runCheckEnv(t *testing.T, bin, policyPath string, env, extra []string, refs ...string) (map[string]checkLine, int) {
	t.Helper()
	args := append([]string{"check", "--policy", policyPath, "--output", "json"}, extra...)
	cmd := exec.Command(bin, append(args, refs...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := exitStatus(t, err)
	lines := map[string]checkLine{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var c checkLine
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("check printed %q (stderr %s): %v", l, stderr.String(), err)
		}
		lines[c.Input] = c
		t.Logf("check: %s", l)
	}
	return lines, code
}

func TestSignatureCheck(t *testing.T) {
	e := RequireEnv(t)
	f := newSigFixtures(t, e)
	bin := BuildPullguard(t)
	pol := f.policy(t)
	keyID := fingerprintOf(t, f.allowedKey)

	refs := []string{f.ref(imgClassic), f.ref(imgBundle), f.ref(imgOtherKey), f.ref(imgUnsigned),
		f.ref(imgMoved), f.ref(imgMovedBundle), f.ref(imgOpen), f.digestRef(imgClassic),
		f.ref(imgEd25519), f.ref(imgRSA), f.ref(imgP384), f.ref(imgAttested), f.ref(imgStored), f.ref(imgStoredBundle)}
	got, code := runCheck(t, bin, pol, nil, refs...)
	if code != 1 {
		t.Errorf("exit status %d, want 1 (some denied)", code)
	}
	want := []struct {
		input     string
		allowed   bool
		signature string
		reason    string
	}{
		{f.ref(imgClassic), true, "verified:" + keyID, "signed by " + f.allowedKey + " (ECDSA P-256 " + keyID[:23] + "…, cosign signature)"},
		{f.digestRef(imgClassic), true, "verified:" + keyID, "cosign signature"},
		{f.ref(imgBundle), true, "verified:" + keyID, "Sigstore bundle"},
		{f.ref(imgOtherKey), false, "invalid", "no valid signature by a listed key for " + f.digests[imgOtherKey] + " in " + f.reg.addr + "/signed/otherkey: 1 signature by another key"},
		{f.ref(imgUnsigned), false, "missing", "no signature for " + f.digests[imgUnsigned] + " in " + f.reg.addr + "/signed/unsigned"},
		{f.ref(imgMoved), false, "invalid", "1 signature by a listed key for another digest (" + f.digests[imgClassic] + ")"},
		{f.ref(imgMovedBundle), false, "invalid", "1 signature by a listed key for another digest"},
		{f.ref(imgOpen), true, "", "matches allow rule " + f.reg.addr + "/open/**"},
		{f.ref(imgAttested), false, "invalid", "1 attestation by a listed key, not signatures"},
		{f.ref(imgEd25519), true, "verified:" + fingerprintOf(t, f.typedKeys[imgEd25519]), "(Ed25519 "},
		{f.ref(imgRSA), true, "verified:" + fingerprintOf(t, f.typedKeys[imgRSA]), "(RSA 3072 "},
		{f.ref(imgP384), true, "verified:" + fingerprintOf(t, f.typedKeys[imgP384]), "(ECDSA P-384 "},
		{f.ref(imgStored), true, "verified:" + keyID, "signature-repository " + f.ref(sigStore) + ": signed by " + f.allowedKey},
		{f.ref(imgStoredBundle), true, "verified:" + keyID, "Sigstore bundle"},
	}
	for _, w := range want {
		c, ok := got[w.input]
		if !ok {
			t.Errorf("%s: no line in check's output", w.input)
			continue
		}
		if c.Allowed != w.allowed || c.Signature != w.signature || !strings.Contains(c.Reason, w.reason) {
			t.Errorf("%s:\n got allowed=%v signature=%q reason=%q\nwant allowed=%v signature=%q reason containing %q",
				w.input, c.Allowed, c.Signature, c.Reason, w.allowed, w.signature, w.reason)
		}
	}
	// A tag is judged with the digest it resolved to, so the output says
	// which content was verified.
	if c := got[f.ref(imgClassic)]; c.Reference != f.ref(imgClassic)+"@"+f.digests[imgClassic] {
		t.Errorf("reference = %s, want the tag with its resolved digest", c.Reference)
	}

	// Without signature-repository the same signatures are looked for
	// beside the images, where there are none.
	beside := WritePolicy(t, "", fmt.Sprintf("mode: enforce\nallow:\n  - image: %s/stored/**\n    signed-by:\n      - key: %s\n", f.reg.addr, f.allowedKey))
	got, _ = runCheck(t, bin, beside, nil, f.ref(imgStored), f.ref(imgStoredBundle))
	for _, img := range []string{imgStored, imgStoredBundle} {
		repo, _, _ := strings.Cut(img, ":")
		if c := got[f.ref(img)]; c.Allowed || c.Signature != "missing" || !strings.Contains(c.Reason, "no signature for "+f.digests[img]+" in "+f.ref(repo)) {
			t.Errorf("%s, signatures looked for beside it: %+v", img, c)
		}
	}

	got, code = runCheck(t, bin, pol, []string{"--offline"}, f.ref(imgClassic), f.ref(imgOpen))
	if c := got[f.ref(imgClassic)]; c.Allowed || c.Signature != "unverifiable" || !strings.HasSuffix(c.Reason, "signature not verified (offline)") || code != 1 {
		t.Errorf("--offline: %+v exit %d", c, code)
	}
	if c := got[f.ref(imgOpen)]; !c.Allowed {
		t.Errorf("--offline denied a reference that needs no signature: %+v", c)
	}

	// The registry goes away: nothing that needs a signature is allowed,
	// and the reason says the registry could not be asked.
	f.reg.stop(t)
	got, code = runCheck(t, bin, pol, nil, f.ref(imgClassic), f.digestRef(imgBundle), f.ref(imgOpen))
	if code != 1 {
		t.Errorf("registry stopped: exit %d, want 1", code)
	}
	if c := got[f.ref(imgClassic)]; c.Allowed || c.Signature != "unverifiable" || !strings.Contains(c.Reason, "cannot resolve") || !strings.Contains(c.Reason, "connection refused") {
		t.Errorf("registry stopped, tag: %+v", c)
	}
	if c := got[f.digestRef(imgBundle)]; c.Allowed || c.Signature != "unverifiable" || !strings.Contains(c.Reason, "could not be read from the registry (connection refused)") {
		t.Errorf("registry stopped, digest: %+v", c)
	}
	if c := got[f.ref(imgOpen)]; !c.Allowed {
		t.Errorf("registry stopped: a reference needing no signature was denied: %+v", c)
	}
}

func TestSignatureVerifyImage(t *testing.T) {
	e := RequireEnv(t)
	f := newSigFixtures(t, e)
	bin := BuildPullguard(t)
	pol := f.policy(t)

	verify := func(img string) (int, string) {
		t.Helper()
		repo, _, _ := strings.Cut(img, ":")
		desc := fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":1}`, f.digests[img])
		cmd := exec.Command(bin, "verify-image", "-name", f.reg.addr+"/"+repo+":"+strings.SplitN(img, ":", 2)[1],
			"-digest", f.digests[img], "-stdin-media-type", "application/vnd.oci.descriptor.v1+json")
		cmd.Stdin = strings.NewReader(desc)
		cmd.Env = append(os.Environ(), "PULLGUARD_POLICY="+pol)
		out, err := cmd.Output()
		return exitStatus(t, err), strings.TrimSpace(string(out))
	}
	for _, c := range []struct {
		img    string
		code   int
		reason string
	}{
		{imgClassic, 0, "pullguard: allowed: "},
		{imgBundle, 0, "Sigstore bundle"},
		{imgOtherKey, 1, "1 signature by another key"},
		{imgUnsigned, 1, "but no signature for " + f.digests[imgUnsigned]},
		{imgMoved, 1, "for another digest"},
		{imgOpen, 0, "allowed"},
	} {
		code, out := verify(c.img)
		if code != c.code || !strings.Contains(out, c.reason) {
			t.Errorf("verify-image %s: exit %d %q, want exit %d with %q", c.img, code, out, c.code, c.reason)
		}
	}
	f.reg.stop(t)
	start := time.Now()
	code, out := verify(imgClassic)
	if code != 1 || !strings.Contains(out, "could not be read from the registry") {
		t.Errorf("registry stopped: exit %d %q, want a refusal saying the registry could not be read", code, out)
	}
	if el := time.Since(start); el > 9*time.Second {
		t.Errorf("verify-image took %v with the registry gone; containerd kills it at 10s", el)
	}
}

// Credentials come from Docker's config.json, as `docker login` writes it
// and the docker CLI reads it ($DOCKER_CONFIG); without them the registry
// cannot be asked, which is no answer, not an allowance.
func TestSignatureRegistryCredentials(t *testing.T) {
	e := RequireEnv(t)
	cosign := cosignBinary(t, e)
	bin := BuildPullguard(t)
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	writeTestFile(t, htpasswd, "puller:"+string(hash)+"\n")
	reg := startRegistry(t, "auth:\n  htpasswd:\n    realm: pullguard-test\n    path: "+htpasswd+"\n")
	reg.auth = &authn.Basic{Username: "puller", Password: "s3cret"}
	digest := reg.pushRandom(t, "private/app:1.0")

	dockerConfig := filepath.Join(dir, "docker")
	if err := os.Mkdir(dockerConfig, 0o700); err != nil {
		t.Fatal(err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte("puller:s3cret"))
	writeTestFile(t, filepath.Join(dockerConfig, "config.json"), fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.addr, auth))
	withCreds := []string{"DOCKER_CONFIG=" + dockerConfig}

	cosignRun(t, cosign, dir, withCreds, "generate-key-pair", "--output-key-prefix", "team")
	if err := os.Chmod(filepath.Join(dir, "team.pub"), 0o644); err != nil {
		t.Fatal(err)
	}
	cosignRun(t, cosign, dir, withCreds, append(strings.Fields("sign --key team.key --tlog-upload=false --use-signing-config=false --new-bundle-format=false "+cosignSignFlags),
		reg.addr+"/private/app@"+digest)...)
	pol := WritePolicy(t, "", fmt.Sprintf("mode: enforce\nallow:\n  - image: %s/private/**\n    signed-by:\n      - key: %s\n", reg.addr, filepath.Join(dir, "team.pub")))

	ref := reg.addr + "/private/app:1.0"
	got, _ := runCheckEnv(t, bin, pol, withCreds, nil, ref)
	if c := got[ref]; !c.Allowed || !strings.HasPrefix(c.Signature, "verified:") {
		t.Errorf("with Docker's credentials: %+v", c)
	}
	got, _ = runCheckEnv(t, bin, pol, []string{"DOCKER_CONFIG=" + t.TempDir()}, nil, ref)
	if c := got[ref]; c.Allowed || c.Signature != "unverifiable" || !strings.Contains(c.Reason, "HTTP 401") {
		t.Errorf("without credentials: %+v, want unverifiable with HTTP 401", c)
	}
}

// exitStatus is a finished command's exit status; other errors fail the test.
func exitStatus(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// fingerprintOf is sha256 of the key's DER (SubjectPublicKeyInfo), what
// `openssl pkey -pubin -outform DER | sha256sum` prints.
func fingerprintOf(t *testing.T, pub string) string {
	t.Helper()
	data, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s is not PEM", pub)
	}
	sum := sha256.Sum256(block.Bytes)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// BenchmarkSignatureVerify is an uncached verification against the local
// registry, for each format (a fresh verifier each round, so nothing is
// cached). The baseline, in the same run, is one HEAD of the manifest by
// digest: the least a verification must do.
func BenchmarkSignatureVerify(b *testing.B) {
	e := RequireEnv(b)
	f := newSigFixtures(b, e)
	pol, err := policy.Load(f.policy(b), policy.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	keys := pol.Allow[0].SignedBy
	reg := registry.New(registry.Options{})
	ctx := context.Background()
	const rounds = 100
	// timed returns the median and 99th percentile of op, in ms.
	timed := func(img string, op func(repo, digest string) error) (float64, float64) {
		repo, _, _ := strings.Cut(img, ":")
		repo = f.reg.addr + "/" + repo
		var xs []time.Duration
		for i := 0; i < rounds; i++ {
			start := time.Now()
			if err := op(repo, f.digests[img]); err != nil {
				b.Fatalf("%s: %v", img, err)
			}
			xs = append(xs, time.Since(start))
		}
		return millis(percentile(xs, 50)), millis(percentile(xs, 99))
	}
	verify := func(repo, digest string) error {
		if r := signature.New(reg).Verify(ctx, repo, digest, keys); r.Status != policy.SignatureVerified {
			return fmt.Errorf("%s: %s", r.Status, r.Reason)
		}
		return nil
	}
	head := func(repo, digest string) error {
		ok, err := reg.HasManifest(ctx, repo, digest)
		if err == nil && !ok {
			err = errors.New("manifest not found")
		}
		return err
	}
	for i := 0; i < b.N; i++ {
		base50, base99 := timed(imgClassic, head)
		c50, c99 := timed(imgClassic, verify)
		bu50, bu99 := timed(imgBundle, verify)
		b.ReportMetric(c50, "p50-ms/classic")
		b.ReportMetric(c99, "p99-ms/classic")
		b.ReportMetric(bu50, "p50-ms/bundle")
		b.ReportMetric(bu99, "p99-ms/bundle")
		b.ReportMetric(base50, "p50-ms/head-baseline")
		b.ReportMetric(base99, "p99-ms/head-baseline")
		b.ReportMetric(c50/base50, "ratio-classic/head")
		b.ReportMetric(bu50/base50, "ratio-bundle/head")
	}
	b.ReportMetric(0, "ns/op")
}
