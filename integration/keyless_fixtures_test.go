package integration

// Keyless signatures made by the real cosign CLI, offline: a CA of the
// test's own stands in for Fulcio (leaf certificates carrying Fulcio's
// issuer extensions and a URI or email subject), a real sigstore
// timestamp-authority built from the Go module proxy (tools/tsa) says when each was
// used, and `cosign trusted-root create` names both in a trusted_root.json.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Fulcio's issuer extensions: the legacy one (raw bytes; cosign's classic
// path reads it) and the current one (a DER UTF8String).
var (
	oidIssuerV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
)

// The signers the keyless policy accepts.
const (
	ghIssuer     = "https://token.actions.githubusercontent.com"
	ghSubjectRE  = `^https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v[0-9.]+$`
	ghSubject    = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.0"
	googleIssuer = "https://accounts.google.com"
	googleEmail  = "signer@acme.example"
)

// keylessImage is one fixture: who its certificate names, which CA issued
// it, the format and whether a timestamp vouches for it.
type keylessImage struct {
	img, issuer, subject string
	email, bundle        bool
	otherCA, noTimestamp bool
	expired              bool // the certificate expired before the timestamp
	// valid is cosign verify's verdict with the policy's signers.
	valid bool
}

// The keyless fixture images, repository:tag below the registry.
var keylessImages = []keylessImage{
	{img: "keyless/uri:1.0", issuer: ghIssuer, subject: ghSubject, valid: true},
	{img: "keyless/email-bundle:1.0", issuer: googleIssuer, subject: googleEmail, email: true, bundle: true, valid: true},
	{img: "keyless/wrong-issuer:1.0", issuer: "https://token.actions.githubusercontent.com.evil.example", subject: ghSubject},
	{img: "keyless/wrong-subject:1.0", issuer: ghIssuer, subject: "https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1.0"},
	{img: "keyless/prefix-uri:1.0", issuer: ghIssuer, subject: ghSubject + "-evil"},
	{img: "keyless/prefix-email:1.0", issuer: googleIssuer, subject: googleEmail + ".evil.example", email: true, bundle: true},
	{img: "keyless/other-ca:1.0", issuer: ghIssuer, subject: ghSubject, otherCA: true},
	{img: "keyless/expired:1.0", issuer: ghIssuer, subject: ghSubject, expired: true},
	// cosign verify --insecure-ignore-tlog checks a certificate without a
	// timestamp at the current time, which its ten minutes still cover;
	// pullguard never does (keylessWant): a Fulcio certificate proves
	// nothing about when it was used.
	{img: "keyless/no-timestamp:1.0", issuer: ghIssuer, subject: ghSubject, noTimestamp: true, valid: true},
}

type keylessFixtures struct {
	reg     *privateRegistry
	root    string // trusted_root.json naming the test CA and the TSA
	digests map[string]string
}

func (f *keylessFixtures) ref(img string) string { return f.reg.addr + "/" + img }

// policy accepts the GitHub workflow by an anchored regexp and the Google
// account exactly, under keyless/**.
func (f *keylessFixtures) policy(t testing.TB) string {
	return WritePolicy(t, "", fmt.Sprintf(`mode: enforce
trusted-root: %s
allow:
  - image: %s/keyless/**
    signed-by:
      - issuer: %s
        subject-regexp: '%s'
      - issuer: %s
        subject: %s
`, f.root, f.reg.addr, ghIssuer, ghSubjectRE, googleIssuer, googleEmail))
}

func newKeylessFixtures(t testing.TB, e *Env) *keylessFixtures {
	t.Helper()
	cosign := cosignBinary(t, e)
	dir := t.TempDir()
	f := &keylessFixtures{reg: startRegistry(t, ""), digests: map[string]string{}}
	tsaURL := startTSA(t, dir)
	run := func(env []string, args ...string) { t.Helper(); cosignRun(t, cosign, dir, env, args...) }

	ca := newTestCA(t, "pullguard test Fulcio", time.Now().Add(-time.Hour))
	other := newTestCA(t, "someone else's Fulcio", time.Now().Add(-time.Hour))
	writeTestFile(t, filepath.Join(dir, "ca.pem"), ca.pem)
	writeTestFile(t, filepath.Join(dir, "other-ca.pem"), other.pem)
	f.root = filepath.Join(dir, "trusted_root.json")
	run(nil, "trusted-root", "create", "--fulcio=url=https://fulcio.test.example,certificate-chain=ca.pem",
		"--tsa=url="+tsaURL+",certificate-chain=tsa.pem",
		"--no-default-fulcio", "--no-default-rekor", "--no-default-ctfe", "--no-default-tsa", "--out", f.root)
	if err := os.Chmod(f.root, 0o644); err != nil {
		t.Fatal(err)
	}
	signingConfig := filepath.Join(dir, "signing-config.json")
	writeTestFile(t, signingConfig, fmt.Sprintf(`{"mediaType":"application/vnd.dev.sigstore.signingconfig.v0.2+json",
"tsaUrls":[{"url":%q,"majorApiVersion":1,"validFor":{"start":"2020-01-01T00:00:00Z"},"operator":"test"}],
"rekorTlogConfig":{"selector":"ANY"},"tsaConfig":{"selector":"ANY"}}`, tsaURL))

	for i, k := range keylessImages {
		f.digests[k.img] = f.reg.pushRandom(t, k.img)
		issuing := ca
		if k.otherCA {
			issuing = other
		}
		name := fmt.Sprintf("leaf%d", i)
		notBefore := time.Now().Add(-time.Minute)
		if k.expired {
			notBefore = time.Now().Add(-30 * time.Minute)
		}
		issuing.leaf(t, dir, name, k.issuer, k.subject, k.email, notBefore)
		run(nil, "import-key-pair", "--key", name+".p8", "--output-key-prefix", name)
		digestRef := f.reg.addr + "/" + strings.Split(k.img, ":")[0] + "@" + f.digests[k.img]
		args := []string{"sign", "--key", name + ".key", "--certificate", name + ".pem"}
		if k.bundle {
			// With --certificate-chain cosign writes x509CertificateChain
			// into a v0.3 bundle, which verifiers refuse.
			args = append(args, "--signing-config", signingConfig, "--trusted-root", f.root)
		} else {
			args = append(args, "--certificate-chain", filepath.Base(issuing.file(t, dir)),
				"--tlog-upload=false", "--use-signing-config=false", "--new-bundle-format=false")
			if !k.noTimestamp {
				args = append(args, "--timestamp-server-url", tsaURL)
			}
		}
		run(nil, append(append(args, strings.Fields(cosignSignFlags)...), digestRef)...)
	}

	// cosign verify, with the policy's signers, is the reference verdict.
	for _, k := range keylessImages {
		args := []string{"verify", "--trusted-root", f.root, "--insecure-ignore-tlog", "--insecure-ignore-sct",
			"--use-signed-timestamps", "--allow-http-registry", "--allow-insecure-registry"}
		if k.email || k.issuer == googleIssuer {
			args = append(args, "--certificate-oidc-issuer", googleIssuer, "--certificate-identity", googleEmail)
		} else {
			args = append(args, "--certificate-oidc-issuer", ghIssuer, "--certificate-identity-regexp", ghSubjectRE)
		}
		if k.bundle {
			args = append(args, "--new-bundle-format")
		}
		cmd := exec.Command(cosign, append(args, f.ref(k.img))...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, "tuf"))
		out, err := cmd.CombinedOutput()
		if (err == nil) != k.valid {
			t.Fatalf("fixture %s: cosign verify: %v, want valid=%v\n%s", k.img, err, k.valid, out)
		}
	}
	return f
}

// testCA is a certificate authority standing in for Fulcio.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
	name string
}

func newTestCA(t testing.TB, cn string, notBefore time.Time) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{"pullguard tests"}},
		NotBefore: notBefore, NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, name: strings.ReplaceAll(cn, " ", "-"),
		pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// file writes the CA's certificate into dir and returns its path.
func (ca *testCA) file(t testing.TB, dir string) string {
	p := filepath.Join(dir, ca.name+".pem")
	writeTestFile(t, p, ca.pem)
	return p
}

// leaf writes NAME.pem (a Fulcio-like certificate for issuer and subject,
// valid for ten minutes from notBefore) and NAME.p8 (its key) in dir.
func (ca *testCA) leaf(t testing.TB, dir, name, issuer, subject string, email bool, notBefore time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := asn1.MarshalWithParams(issuer, "utf8")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    notBefore, NotAfter: notBefore.Add(10 * time.Minute),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{{Id: oidIssuerV1, Value: []byte(issuer)}, {Id: oidIssuerV2, Value: v2}},
	}
	if email {
		tmpl.EmailAddresses = []string{subject}
	} else {
		u, err := url.Parse(subject)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, name+".pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeTestFile(t, filepath.Join(dir, name+".p8"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})))
}

// tsaBinary builds the timestamp authority (tools/tsa, sigstore's
// timestamp-authority from the Go module proxy) once per machine and
// version, into a directory of its own beside the test tools: the tools'
// cache key is not touched.
func tsaBinary(t testing.TB) string {
	t.Helper()
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		data, err := os.ReadFile(filepath.Join("tools", "tsa", f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(data)
	}
	cache := os.Getenv("PGENV_TOOLS_CACHE")
	if cache == "" {
		cache = "/var/cache/pullguard/testenv-tools"
	}
	dir := filepath.Join(cache, "tsa-"+hex.EncodeToString(h.Sum(nil))[:16])
	exe := filepath.Join(dir, "tsa")
	if _, err := os.Stat(exe); err == nil {
		return exe
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(cache, ".tsa.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(exe); err == nil {
		return exe
	}
	t.Logf("building the timestamp authority into %s (once per machine)", dir)
	cmd := exec.Command("go", "build", "-trimpath", "-o", exe+".tmp", ".")
	cmd.Dir = filepath.Join("tools", "tsa")
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the timestamp authority: %v\n%s", err, out)
	}
	if err := os.Rename(exe+".tmp", exe); err != nil {
		t.Fatal(err)
	}
	return exe
}

// startTSA runs a timestamp authority with an in-memory signer on a
// loopback port, writes its chain to dir/tsa.pem and returns its URL.
func startTSA(t testing.TB, dir string) string {
	t.Helper()
	exe := tsaBinary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	logf, err := os.Create(filepath.Join(dir, "tsa.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	base := fmt.Sprintf("http://127.0.0.1:%d/api/v1/timestamp", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/certchain")
		if err == nil {
			chain, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK && strings.Contains(string(chain), "BEGIN CERTIFICATE") {
				writeTestFile(t, filepath.Join(dir, "tsa.pem"), string(chain))
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the timestamp authority did not answer at %s: %v", base, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
