package integration

// The policy delivered as a signed OCI artifact (issue 29), end to end: `pullguard policy
// push`, signatures by the real cosign CLI (both formats), a registry of the test's own that
// it stops and empties, and the daemon guarding the real dockerd with what it fetched.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// msgPolicySourceFailed is copied, not imported: SREs' filters depend on the value.
const msgPolicySourceFailed = "0b1ae89c6ee3434d98f2db1b9ac9eca8"

// policySourceEnv is a registry, cosign keys and a place to write policy directories.
type policySourceEnv struct {
	e      *Env
	reg    *privateRegistry
	cosign string
	dir    string // cosign's working directory: allowed.key/.pub, other.key/.pub
	repo   string // REGISTRY/pullguard/policy
}

func newPolicySourceEnv(t *testing.T, e *Env) *policySourceEnv {
	t.Helper()
	s := &policySourceEnv{e: e, cosign: cosignBinary(t, e), dir: t.TempDir(), reg: startRegistry(t, "")}
	s.repo = s.reg.addr + "/pullguard/policy"
	for _, k := range []string{"allowed", "other"} {
		cosignRun(t, s.cosign, s.dir, nil, "generate-key-pair", "--output-key-prefix", k)
		if err := os.Chmod(filepath.Join(s.dir, k+".pub"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeTestFile(t, filepath.Join(s.dir, "signing-config.json"), `{"mediaType":"application/vnd.dev.sigstore.signingconfig.v0.2+json","rekorTlogConfig":{},"tsaConfig":{}}`)
	writeTestFile(t, filepath.Join(s.dir, "trusted-root.json"), `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)
	return s
}

func (s *policySourceEnv) key(name string) string { return filepath.Join(s.dir, name+".pub") }

// policyDir writes a policy directory: the main file, a drop-in, and a key file the main
// file names by a relative path (the loader must find it beside the unpacked policy).
func (s *policySourceEnv) policyDir(t *testing.T, withMyorgBase bool, extra string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"policy.d", "keys"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	main := fmt.Sprintf("mode: enforce\n%sallow:\n  - image: %s/approved/**\n  - image: %s/signed/**\n    signed-by:\n      - key: keys/team.pub\n",
		extra, s.e.Registry, s.reg.addr)
	if withMyorgBase {
		main += fmt.Sprintf("  - image: %s/myorg/base\n", s.e.Registry)
	}
	pub, err := os.ReadFile(s.key("allowed"))
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "policy.yaml"), main)
	writeTestFile(t, filepath.Join(dir, "policy.d", "10-deny.yaml"), fmt.Sprintf("deny:\n  - image: %s/evil/**\n", s.e.Registry))
	writeTestFile(t, filepath.Join(dir, "keys", "team.pub"), string(pub))
	return dir
}

// push runs `pullguard policy push DIR oci://REPO:TAG` and returns the digest it prints.
func (s *policySourceEnv) push(t *testing.T, dir, tag string) string {
	t.Helper()
	out, stderr, code := runPullguard(t, s.e, "policy", "push", dir, "oci://"+s.repo+":"+tag)
	if code != 0 || !strings.HasPrefix(out, "sha256:") {
		t.Fatalf("pullguard policy push: exit %d, %q\n%s", code, out, stderr)
	}
	return strings.TrimSpace(out)
}

// sign signs REPO@digest with the named key, in cosign's classic or bundle format.
func (s *policySourceEnv) sign(t *testing.T, digest, key string, bundle bool) {
	t.Helper()
	args := strings.Fields("sign --tlog-upload=false --use-signing-config=false --new-bundle-format=false " + cosignSignFlags)
	if bundle {
		args = append(strings.Fields("sign --signing-config signing-config.json --trusted-root trusted-root.json"), strings.Fields(cosignSignFlags)...)
	}
	cosignRun(t, s.cosign, s.dir, nil, append(args, "--key", key+".key", s.repo+"@"+digest)...)
}

// pushCrafted pushes to the staging tag what `pullguard policy push` would never make: a
// policy artifact whose one file is named title, claiming 32 MiB unless title is "../…" (a
// small file then), and returns its digest.
func (s *policySourceEnv) pushCrafted(t *testing.T, title string) string {
	t.Helper()
	content := []byte("default: allow\n")
	layer := static.NewLayer(content, "application/vnd.pullguard.policy.file.v1")
	repo, err := name.NewRepository(s.repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	for _, blob := range []v1.Layer{layer, static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")} {
		if err := remote.WriteLayer(repo, blob); err != nil {
			t.Fatal(err)
		}
	}
	size := int64(len(content))
	if !strings.HasPrefix(title, "..") {
		size = 32 << 20
	}
	d, _ := layer.Digest()
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"artifactType":"application/vnd.pullguard.policy.v1",`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},`+
		`"layers":[{"mediaType":"application/vnd.pullguard.policy.file.v1","size":%d,"digest":%q,"annotations":{"org.opencontainers.image.title":%q}}]}`,
		size, d, title)
	if err := remote.Put(repo.Tag("staging"), rawOCIManifest(manifest)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(manifest))
	return "sha256:" + hex.EncodeToString(sum[:])
}

type rawOCIManifest string

func (m rawOCIManifest) RawManifest() ([]byte, error) { return []byte(m), nil }
func (m rawOCIManifest) MediaType() (types.MediaType, error) {
	return types.OCIManifestSchema1, nil
}

type sourceStatus struct {
	PolicySource struct {
		Source    string `json:"source"`
		Digest    string `json:"digest"`
		Stale     bool   `json:"stale"`
		LastError string `json:"last_error"`
	} `json:"policy_source"`
	PolicyHash string `json:"policy_hash"`
}

func readSourceStatus(t *testing.T, e *Env, sock string) sourceStatus {
	t.Helper()
	out, stderr, code := runPullguard(t, e, "status", "-o", "json", "--status-socket", sock)
	if code != 0 {
		t.Fatalf("pullguard status: exit %d\n%s", code, stderr)
	}
	var st sourceStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("pullguard status -o json: %v\n%s", err, out)
	}
	return st
}

// TestPolicySource: a signed artifact applies and is enforced; a new revision applies within
// the poll interval; an unsigned artifact, one signed by another key and a signed image that
// is not a policy artifact are refused, each with its reason, and the last good stays in
// force; a restart with the registry stopped enforces the last good from the state
// directory and says so; with the artifact deleted the last good stays.
func TestPolicySource(t *testing.T) {
	e := RequireEnv(t)
	s := newPolicySourceEnv(t, e)
	const interval = 2 * time.Second
	state := filepath.Join(t.TempDir(), "state")
	sock := filepath.Join(socketDir(t, "pgsource-"), "status.sock")
	source := "oci://" + s.repo + ":prod"
	metricsAddr := freeAddr(t)
	metrics := func() samples { return parseSamples(t, scrape(t, "http://"+metricsAddr+"/metrics")) }
	info := func(digest string) string {
		return fmt.Sprintf(`pullguard_policy_source_info{digest=%q,source=%q}`, digest, source)
	}
	const stale, lastOK = `pullguard_policy_source_stale{}`, `pullguard_policy_source_last_check_successful{}`
	start := func(t *testing.T) *Pullguard {
		t.Helper()
		return StartPullguard(t, "daemon", "--log-target", "journald", "--log-level", "debug", "--metrics-listen", metricsAddr,
			"--docker-host", e.DockerHost, "--containerd-address", "none", "--status-socket", sock,
			"--policy", filepath.Join(t.TempDir(), "policy.yaml"), // absent: not read
			"--policy-source", source, "--policy-source-key", s.key("allowed"),
			"--policy-source-interval", interval.String(), "--state-dir", state)
	}
	approved, myorg, evil := e.Ref("approved/busybox:1.0"), e.Ref("myorg/base:1.0"), e.Ref("evil/miner:latest")

	t.Log("a signed artifact applies")
	first := s.push(t, s.policyDir(t, true, ""), "prod")
	s.sign(t, first, "allowed", false)
	g := start(t)
	loaded := g.WaitEntry(t, readyDeadline, "MESSAGE_ID="+msgPolicyLoaded)
	requireFields(t, loaded, map[string]string{
		"PULLGUARD_POLICY_DIGEST": first, "PULLGUARD_POLICY_SOURCE": source, "PULLGUARD_TRIGGER": "start",
		"PULLGUARD_POLICY_FILES": filepath.Join(state, "policy", first, "policy.yaml") + "," +
			filepath.Join(state, "policy", first, "policy.d", "10-deny.yaml"),
		"PULLGUARD_ALLOW_RULES": "3", "PULLGUARD_DENY_RULES": "1",
	})
	g.WaitEntry(t, readyDeadline, "MESSAGE_ID="+msgStarted)
	if st, err := os.Stat(state); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("state directory: %v, mode %v; want 0700", err, st.Mode())
	}
	e.Docker(t, "pull", "-q", approved)
	e.Docker(t, "pull", "-q", myorg)
	e.Docker(t, "pull", "-q", evil)
	waitImageGone(t, e, evil)
	requireImage(t, e, myorg, "")

	t.Log("a new revision applies within the poll interval")
	// Signed before the tag moves to it (pushed under another tag first: the same files
	// make the same digest), in the bundle format this time.
	revision := s.policyDir(t, false, "")
	second := s.push(t, revision, "candidate")
	s.sign(t, second, "allowed", true)
	moved := time.Now()
	if again := s.push(t, revision, "prod"); again != second {
		t.Fatalf("the same directory pushed again made %s, not %s", again, second)
	}
	loaded = g.WaitEntry(t, actDeadline, "MESSAGE_ID="+msgPolicyLoaded, "PULLGUARD_POLICY_DIGEST="+second)
	// When the daemon logged it, not when the test saw it.
	us, err := strconv.ParseInt(loaded["__REALTIME_TIMESTAMP"], 10, 64)
	if err != nil {
		t.Fatalf("policy loaded entry without a time stamp: %v", err)
	}
	took := time.UnixMicro(us).Sub(moved)
	t.Logf("the new revision was in force %v after the tag moved (interval %v)", took.Round(time.Millisecond), interval)
	// The first poll after the move picks it up; the rest is verifying, downloading, loading
	// and journald on a loaded 2-core machine.
	if took > interval+3*time.Second {
		t.Errorf("the new revision took %v to apply; the poll interval is %v", took, interval)
	}
	requireFields(t, loaded, map[string]string{"PULLGUARD_TRIGGER": "policy source", "PULLGUARD_POLICY_SOURCE": source})
	waitImageGone(t, e, myorg) // no longer allowed: the reload's reconcile removes it
	requireImage(t, e, approved, "")
	waitSamples(t, "after the revision", actDeadline, metrics, map[string]float64{info(second): 1, stale: 0, lastOK: 1})
	problems, err := promlint.New(strings.NewReader(scrape(t, "http://"+metricsAddr+"/metrics"))).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	inForce := readSourceStatus(t, e, sock)
	if inForce.PolicySource.Digest != second || inForce.PolicySource.LastError != "" {
		t.Errorf("status after the revision: %+v", inForce)
	}

	refused := func(t *testing.T, digest, reason string) {
		t.Helper()
		entry := g.WaitEntry(t, actDeadline, "MESSAGE_ID="+msgPolicySourceFailed, "PULLGUARD_REFUSED_DIGEST="+digest)
		requireFields(t, entry, map[string]string{"PULLGUARD_POLICY_DIGEST": second, "PRIORITY": "3", "PULLGUARD_POLICY_SOURCE": source})
		if !strings.Contains(entry["PULLGUARD_ERROR"], reason) {
			t.Errorf("refusal of %s: PULLGUARD_ERROR = %q, want it to say %q", digest, entry["PULLGUARD_ERROR"], reason)
		}
		st := readSourceStatus(t, e, sock)
		if st.PolicySource.Digest != second || st.PolicyHash != inForce.PolicyHash || !strings.Contains(st.PolicySource.LastError, reason) {
			t.Errorf("status after the refusal of %s: %+v, want %s in force and the reason", digest, st, second)
		}
		// The last good is enforced.
		e.Docker(t, "pull", "-q", evil)
		waitImageGone(t, e, evil)
	}
	allowAll := "default: allow\n"
	t.Log("an unsigned artifact is refused")
	refused(t, s.push(t, s.policyDir(t, true, allowAll), "prod"), "no signature for")
	// The next two are signed under a staging tag before prod names them, so that no poll
	// sees them unsigned.
	t.Log("an artifact signed by another key is refused")
	otherKey := s.push(t, s.policyDir(t, true, allowAll+"running: keep\n"), "staging")
	s.sign(t, otherKey, "other", false)
	s.reg.copyManifest(t, "pullguard/policy:staging", "pullguard/policy:prod")
	refused(t, otherKey, "1 signature by another key")
	t.Log("a signed image that is not a policy artifact is refused")
	image := s.reg.pushRandom(t, "pullguard/policy:staging")
	s.sign(t, image, "allowed", false)
	s.reg.copyManifest(t, "pullguard/policy:staging", "pullguard/policy:prod")
	refused(t, image, "not a valid pullguard policy artifact")

	t.Log("signed artifacts that climb out of their directory or claim too much are refused")
	for title, reason := range map[string]string{
		"../../escaped.yaml": "not a plain relative path",
		"policy.yaml":        "more than 16777216",
	} {
		crafted := s.pushCrafted(t, title)
		s.sign(t, crafted, "allowed", false)
		s.reg.copyManifest(t, "pullguard/policy:staging", "pullguard/policy:prod")
		refused(t, crafted, reason)
	}
	if _, err := os.Stat(filepath.Join(state, "escaped.yaml")); err == nil {
		t.Error("a file escaped the artifact's directory")
	}

	t.Log("a restart with the registry stopped enforces the last good policy from disk, and says so")
	if err := g.Stop(t); err != nil {
		t.Fatalf("stopping pullguard: %v", err)
	}
	s.reg.stop(t)
	g = start(t)
	loaded = g.WaitEntry(t, readyDeadline, "MESSAGE_ID="+msgPolicyLoaded)
	requireFields(t, loaded, map[string]string{"PULLGUARD_POLICY_DIGEST": second, "PULLGUARD_TRIGGER": "start"})
	if !strings.Contains(loaded["PULLGUARD_ERROR"], "cannot reach "+source) {
		t.Errorf("start entry PULLGUARD_ERROR = %q, want why the source was not checked", loaded["PULLGUARD_ERROR"])
	}
	warning := g.WaitEntry(t, readyDeadline, "MESSAGE_ID="+msgPolicySourceFailed)
	requireFields(t, warning, map[string]string{"PULLGUARD_POLICY_DIGEST": second, "PRIORITY": "4"})
	g.WaitEntry(t, readyDeadline, "MESSAGE_ID="+msgStarted)
	if st := readSourceStatus(t, e, sock); !st.PolicySource.Stale || st.PolicySource.Digest != second || st.PolicyHash != inForce.PolicyHash {
		t.Errorf("status after a start without the registry: %+v, want %s in force, stale", st, second)
	}
	waitSamples(t, "after a start without the registry", actDeadline, metrics, map[string]float64{info(second): 1, stale: 1, lastOK: 0})
	e.Docker(t, "pull", "-q", myorg)
	waitImageGone(t, e, myorg)

	t.Log("the registry back, then the artifact deleted: the last good stays")
	s.reg.start(t)
	Eventually(t, actDeadline, func() (bool, string) {
		st := readSourceStatus(t, e, sock)
		return strings.Contains(st.PolicySource.LastError, "not a valid pullguard policy artifact"), fmt.Sprintf("status %+v", st)
	})
	if err := os.RemoveAll(filepath.Join(filepath.Dir(s.reg.conf), "storage", "docker", "registry", "v2", "repositories", "pullguard", "policy")); err != nil {
		t.Fatal(err)
	}
	Eventually(t, actDeadline, func() (bool, string) {
		st := readSourceStatus(t, e, sock)
		return strings.Contains(st.PolicySource.LastError, "does not exist at the registry") && st.PolicySource.Digest == second,
			fmt.Sprintf("status %+v", st)
	})
	e.Docker(t, "pull", "-q", evil)
	waitImageGone(t, e, evil)
	if n := len(g.Entries(t, "MESSAGE_ID="+msgPolicyLoaded)); n != 1 {
		t.Errorf("%d policy loaded entries since the restart, want only the start's", n)
	}
}

// TestPolicySourceRefusesToStart: local drop-ins are not layered on a signed policy (exit 2,
// naming them); a host that has never fetched a policy and cannot reach the registry has
// nothing to enforce (exit 1, which systemd restarts, unlike 2).
func TestPolicySourceRefusesToStart(t *testing.T) {
	e := RequireEnv(t)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		dropIn bool
		code   int
		want   string
	}{
		"local drop-ins":         {true, 2, "local drop-ins are not layered on a signed policy"},
		"no registry, none kept": {false, 1, "no policy from oci://127.0.0.1:1/pullguard/policy:prod (cannot reach"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			dropIn := filepath.Join(dir, "policy.d", "local.yaml")
			if c.dropIn {
				if err := os.Mkdir(filepath.Dir(dropIn), 0o755); err != nil {
					t.Fatal(err)
				}
				writeTestFile(t, dropIn, "allow:\n  - image: "+e.Ref("anything/**")+"\n")
				c.want += "; move them into the artifact, or away: " + dropIn
			}
			key := filepath.Join(dir, "cosign.pub")
			writeTestFile(t, key, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
			_, stderr, code := runPullguard(t, e, "daemon", "--log-target", "stderr", "--docker-host", e.DockerHost,
				"--containerd-address", "none", "--policy", filepath.Join(dir, "policy.yaml"),
				"--policy-source", "oci://127.0.0.1:1/pullguard/policy:prod", "--policy-source-key", key,
				"--state-dir", filepath.Join(dir, "state"))
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d saying %q", code, stderr, c.code, c.want)
			}
		})
	}
}
