package integration

// attestations: rules end to end, against in-toto statements made by the
// real `cosign attest` (key-based, no transparency log) in both formats
// cosign writes, in a private registry of each test's own: pullguard
// check, the Docker authorization plugin before the pull, the Docker and
// containerd guards after it, and scan.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	provenanceType = "https://slsa.dev/provenance/v1"
	vulnScanType   = "https://cosign.sigstore.dev/attestation/vuln/v1"
)

// The fixture images, repository:tag below the registry, and what each
// carries. "passing provenance": by the builder key, from acme's builder.
const (
	attGood       = "attest/good:1"       // passing provenance (bundle), fresh clean scan (classic)
	attGoodBundle = "attest/bundle:1"     // passing provenance and fresh clean scan, both bundles
	attBadBuilder = "attest/badbuilder:1" // provenance from another builder, fresh clean scan
	attOtherKey   = "attest/otherkey:1"   // passing provenance, a fresh clean scan signed by another key
	attStale      = "attest/stale:1"      // passing provenance, a clean scan 30 days old
	attRescan     = "attest/rescan:1"     // passing provenance, a clean scan, then a newer one finding 2 criticals
	attRescanOK   = "attest/rescanok:1"   // passing provenance, a failing scan, then a newer clean one
	attNoScan     = "attest/noscan:1"     // passing provenance only: one of two required types missing
	attSignedOnly = "attest/signedonly:1" // a cosign signature by the builder key, no attestation
	attOpen       = "open/app:1"          // under a rule without attestations
)

type attFixtures struct {
	reg                    *privateRegistry
	dir                    string
	builder, scanner       string // public keys the policy lists
	digests                map[string]string
	cosign, trustRoot, cfg string
}

func (f *attFixtures) ref(img string) string { return f.reg.addr + "/" + img }

func (f *attFixtures) digestRef(img string) string {
	repo, _, _ := strings.Cut(img, ":")
	return f.reg.addr + "/" + repo + "@" + f.digests[img]
}

func vulnPredicate(finished time.Time, critical int) string {
	return fmt.Sprintf(`{"invocation":{"uri":"https://ci.example.com/scan/1"},"scanner":{"uri":"pkg:github/aquasecurity/trivy@0.58.0","version":"0.58.0","result":{"critical":%d,"high":3}},"metadata":{"scanStartedOn":%q,"scanFinishedOn":%q}}`,
		critical, finished.Add(-time.Minute).UTC().Format(time.RFC3339), finished.UTC().Format(time.RFC3339))
}

func provenancePredicate(builder string) string {
	return fmt.Sprintf(`{"buildDefinition":{"buildType":"https://actions.github.io/buildtypes/workflow/v1","externalParameters":{"workflow":{"ref":"refs/heads/main","repository":"https://github.com/acme/app"}}},"runDetails":{"builder":{"id":%q},"metadata":{"finishedOn":%q}}}`,
		builder, time.Now().Add(-2*time.Hour).UTC().Format(time.RFC3339))
}

// attest runs cosign attest on img with key, the predicate written to a
// file, in the classic format or as a bundle.
func (f *attFixtures) attest(t testing.TB, img, key, typ, predicate string, bundle bool) {
	t.Helper()
	file := filepath.Join(f.dir, UniqueName(t)+".json")
	writeTestFile(t, file, predicate)
	args := []string{"attest", "--key", key, "--type", typ, "--predicate", file}
	if bundle {
		args = append(args, "--signing-config", f.cfg, "--trusted-root", f.trustRoot)
	} else {
		args = append(args, "--tlog-upload=false", "--use-signing-config=false", "--new-bundle-format=false")
	}
	args = append(append(args, strings.Fields(cosignSignFlags)...), f.digestRef(img))
	cosignRun(t, f.cosign, f.dir, nil, args...)
}

func newAttFixtures(t testing.TB, e *Env) *attFixtures {
	t.Helper()
	f := &attFixtures{cosign: cosignBinary(t, e), dir: t.TempDir(), reg: startRegistry(t, ""), digests: map[string]string{}}
	for _, k := range []string{"builder", "scanner", "other"} {
		cosignRun(t, f.cosign, f.dir, nil, "generate-key-pair", "--output-key-prefix", k)
		if err := os.Chmod(filepath.Join(f.dir, k+".pub"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.builder, f.scanner = filepath.Join(f.dir, "builder.pub"), filepath.Join(f.dir, "scanner.pub")
	f.cfg, f.trustRoot = filepath.Join(f.dir, "signing-config.json"), filepath.Join(f.dir, "trusted-root.json")
	// No transparency log, no timestamp authority, no TUF: nothing but the registry is contacted.
	writeTestFile(t, f.cfg, `{"mediaType":"application/vnd.dev.sigstore.signingconfig.v0.2+json","rekorTlogConfig":{},"tsaConfig":{}}`)
	writeTestFile(t, f.trustRoot, `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)
	for _, img := range []string{attGood, attGoodBundle, attBadBuilder, attOtherKey, attStale, attRescan, attRescanOK, attNoScan, attSignedOnly, attOpen} {
		f.digests[img] = f.reg.pushRandom(t, img)
	}
	now := time.Now()
	acme, evil := provenancePredicate("https://github.com/acme/builder"), provenancePredicate("https://github.com/evil/builder")
	fresh, stale := vulnPredicate(now.Add(-time.Hour), 0), vulnPredicate(now.Add(-30*24*time.Hour), 0)
	for _, img := range []string{attGood, attOtherKey, attStale, attRescan, attRescanOK, attNoScan} {
		f.attest(t, img, "builder.key", "slsaprovenance1", acme, true)
	}
	f.attest(t, attGoodBundle, "builder.key", "slsaprovenance1", acme, true)
	f.attest(t, attBadBuilder, "builder.key", "slsaprovenance1", evil, false)
	f.attest(t, attGood, "scanner.key", "vuln", fresh, false)
	f.attest(t, attGoodBundle, "scanner.key", "vuln", fresh, true)
	f.attest(t, attBadBuilder, "scanner.key", "vuln", fresh, false)
	f.attest(t, attOtherKey, "other.key", "vuln", fresh, false)
	f.attest(t, attStale, "scanner.key", "vuln", stale, false)
	// Re-scans append: the classic .att tag gets a second layer.
	f.attest(t, attRescan, "scanner.key", "vuln", vulnPredicate(now.Add(-3*time.Hour), 0), false)
	f.attest(t, attRescan, "scanner.key", "vuln", vulnPredicate(now.Add(-time.Hour), 2), false)
	f.attest(t, attRescanOK, "scanner.key", "vuln", vulnPredicate(now.Add(-3*time.Hour), 2), true)
	f.attest(t, attRescanOK, "scanner.key", "vuln", vulnPredicate(now.Add(-time.Hour), 0), true)
	cosignRun(t, f.cosign, f.dir, nil, append(strings.Fields("sign --key builder.key --tlog-upload=false --use-signing-config=false --new-bundle-format=false "+cosignSignFlags), f.digestRef(attSignedOnly))...)

	// cosign itself, not pullguard, is the reference for what is signed by whom.
	for _, c := range []struct {
		img, key, typ string
		bundle, valid bool
	}{
		{attGood, f.builder, "slsaprovenance1", true, true},
		{attGood, f.scanner, "vuln", false, true},
		{attGoodBundle, f.scanner, "vuln", true, true},
		{attOtherKey, f.scanner, "vuln", false, false},
		{attNoScan, f.scanner, "vuln", false, false},
		{attSignedOnly, f.builder, "slsaprovenance1", false, false},
	} {
		args := []string{"verify-attestation", "--key", c.key, "--insecure-ignore-tlog=true", "--type", c.typ, "--allow-http-registry", "--allow-insecure-registry"}
		if c.bundle {
			args = append(args, "--new-bundle-format", "--trusted-root", f.trustRoot)
		} else {
			args = append(args, "--new-bundle-format=false") // else cosign 3 looks at the bundles only
		}
		cmd := exec.Command(f.cosign, append(args, f.digestRef(c.img))...)
		cmd.Dir = f.dir
		cmd.Env = append(os.Environ(), "HOME="+f.dir, "TUF_ROOT="+filepath.Join(f.dir, "tuf"))
		if out, err := cmd.CombinedOutput(); (err == nil) != c.valid {
			t.Fatalf("fixture %s: cosign verify-attestation --key %s --type %s: %v, want valid=%v\n%s", c.img, filepath.Base(c.key), c.typ, err, c.valid, out)
		}
	}
	return f
}

// policy requires acme's provenance and a clean scan less than a week old
// under attest/**, nothing under open/**.
func (f *attFixtures) policy(t testing.TB) string {
	return WritePolicy(t, "", "mode: enforce\nallow:\n"+f.rules())
}

// rules are the policy's allow rules.
func (f *attFixtures) rules() string {
	return fmt.Sprintf(`  - image: %[1]s/attest/**
    attestations:
      - type: %[4]s
        signed-by:
          - key: %[2]s
        condition: 'predicate.runDetails.builder.id.startsWith("https://github.com/acme/")'
      - type: %[5]s
        signed-by:
          - key: %[3]s
        condition: 'now - timestamp(predicate.metadata.scanFinishedOn) < duration("168h") && predicate.scanner.result.critical == 0'
  - image: %[1]s/open/**
`, f.reg.addr, f.builder, f.scanner, provenanceType, vulnScanType)
}

// attWant is what every path must say about a fixture.
type attWant struct {
	img     string
	allowed bool
	field   string // PULLGUARD_ATTESTATION
	reason  string
}

func (f *attFixtures) wants() []attWant {
	return []attWant{
		{attGood, true, "verified:" + provenanceType + " verified:" + vulnScanType, "attestation " + vulnScanType + " (signed by " + f.scanner + ", cosign attestation, finished "},
		{attGoodBundle, true, "verified:" + provenanceType + " verified:" + vulnScanType, "(signed by " + f.scanner + ", Sigstore bundle, finished "},
		{attBadBuilder, false, "failed:" + provenanceType, "the condition of attestation " + provenanceType},
		{attOtherKey, false, "invalid:" + vulnScanType, "no attestation of type " + vulnScanType + " signed by " + f.scanner + " for " + f.digests[attOtherKey] + " in " + f.reg.addr + "/attest/otherkey: 1 attestation by another key"},
		{attStale, false, "failed:" + vulnScanType, "does not hold on the newest one"},
		{attRescan, false, "failed:" + vulnScanType, "does not hold on the newest one"},
		{attRescanOK, true, "verified:" + provenanceType + " verified:" + vulnScanType, "Sigstore bundle"},
		{attNoScan, false, "missing:" + vulnScanType, "no attestation of type " + vulnScanType + " for " + f.digests[attNoScan]},
		{attSignedOnly, false, "missing:" + provenanceType, "no attestation of type " + provenanceType},
		{attOpen, true, "", "matches allow rule " + f.reg.addr + "/open/**"},
	}
}

func TestAttestationCheck(t *testing.T) {
	e := RequireEnv(t)
	f := newAttFixtures(t, e)
	pol := f.policy(t)
	var refs []string
	for _, w := range f.wants() {
		refs = append(refs, f.ref(w.img))
	}
	got, code := runCheck(t, BuildPullguard(t), pol, nil, refs...)
	if code != 1 {
		t.Errorf("exit status %d, want 1 (some denied)", code)
	}
	for _, w := range f.wants() {
		c, ok := got[f.ref(w.img)]
		if !ok {
			t.Errorf("%s: no line in check's output", w.img)
			continue
		}
		if c.Allowed != w.allowed || c.Attestation != w.field || !strings.Contains(c.Reason, w.reason) {
			t.Errorf("%s:\n got allowed=%v attestation=%q reason=%q\nwant allowed=%v attestation=%q reason containing %q",
				w.img, c.Allowed, c.Attestation, c.Reason, w.allowed, w.field, w.reason)
		}
	}
	// The newer failing scan decides, and the reason names it: 2 criticals, an hour ago.
	if c := got[f.ref(attRescan)]; !strings.Contains(c.Reason, time.Now().Add(-time.Hour).UTC().Format("2006-01-02T15")) {
		t.Errorf("rescan: the reason does not name the newest scan: %s", c.Reason)
	}

	got, code = runCheck(t, BuildPullguard(t), pol, []string{"--offline"}, f.ref(attGood), f.ref(attOpen))
	if c := got[f.ref(attGood)]; c.Allowed || c.Attestation != "unverifiable:"+provenanceType || !strings.HasSuffix(c.Reason, "attestations not verified (offline)") || code != 1 {
		t.Errorf("--offline: %+v exit %d", c, code)
	}
	if !got[f.ref(attOpen)].Allowed {
		t.Errorf("--offline denied a reference that needs no attestation: %+v", got[f.ref(attOpen)])
	}

	// The registry goes away: nothing that needs an attestation is allowed.
	f.reg.stop(t)
	got, _ = runCheck(t, BuildPullguard(t), pol, nil, f.digestRef(attGood))
	if c := got[f.digestRef(attGood)]; c.Allowed || c.Attestation != "unverifiable:"+provenanceType || !strings.Contains(c.Reason, "could not be read from the registry (connection refused)") {
		t.Errorf("registry stopped: %+v", c)
	}
}

// The authorization plugin verifies the attestations of the digest a tag
// resolves to before the pull: what passes is pulled, everything else is
// refused with the reason, and the journal says which type failed how.
func TestAttestationAuthzPull(t *testing.T) {
	ForEachDocker(t, testAttestationAuthzPull)
}

func testAttestationAuthzPull(t *testing.T, e *Env) {
	f := newAttFixtures(t, e)
	d, plugin := startAuthzGuard(t, e, f.policy(t))
	for _, w := range f.wants() {
		out, err := e.DockerErr(t, "pull", "--quiet", f.ref(w.img))
		if w.allowed {
			if err != nil {
				t.Errorf("pull %s refused: %v %s", w.img, err, out)
			}
			continue
		}
		requireRefused(t, err, plugin, deniedBy(plugin, f.ref(w.img)+"@"+f.digests[w.img]), w.reason)
		if e.ImageExists(t, f.ref(w.img)) {
			t.Errorf("%s landed despite the refusal", w.img)
		}
		entry := waitEntryFor(t, d, f.ref(w.img), "PULLGUARD_ACTION=blocked", "PULLGUARD_EVENT=authz")
		if entry["PULLGUARD_ATTESTATION"] != w.field || !strings.Contains(entry["PULLGUARD_REASON"], w.reason) {
			t.Errorf("%s: blocked entry %q, want PULLGUARD_ATTESTATION=%s and a reason containing %q", w.img, entry, w.field, w.reason)
		}
	}
	// The guard beside the plugin keeps what passed.
	time.Sleep(2 * time.Second)
	requireImage(t, e, f.ref(attGood), "")
	requireImage(t, e, f.ref(attGoodBundle), "")
}

// The Docker guard judges images pulled before it ran by their repository
// digests: it removes each that fails, saying why, keeps the rest; scan
// lists the same.
func TestAttestationDockerGuard(t *testing.T) {
	ForEachDocker(t, testAttestationDockerGuard)
}

func testAttestationDockerGuard(t *testing.T, e *Env) {
	f := newAttFixtures(t, e)
	pol := f.policy(t)
	for _, w := range f.wants() {
		e.Docker(t, "pull", "--quiet", f.ref(w.img))
	}
	out, stderr, code := runPullguard(t, e, "scan", "--policy", pol, "--docker-host", e.DockerHost)
	if code != 1 {
		t.Errorf("scan: exit %d, want 1:\n%s%s", code, out, stderr)
	}
	for _, w := range f.wants() {
		if listed := strings.Contains(out, f.ref(w.img)); listed == w.allowed || !w.allowed && !strings.Contains(out, w.reason) {
			t.Errorf("scan lists %s: %v, want %v with %q:\n%s", w.img, listed, !w.allowed, w.reason, out)
		}
	}
	d := startDockerGuard(t, e, pol, "--resync-interval", "3s")
	for _, w := range f.wants() {
		if w.allowed {
			continue
		}
		waitImageGone(t, e, f.ref(w.img))
		entry := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=removed", "PULLGUARD_IMAGE="+f.ref(w.img))
		if entry["PULLGUARD_ATTESTATION"] != w.field || !strings.Contains(entry["PULLGUARD_REASON"], w.reason) {
			t.Errorf("%s: removed entry %q, want PULLGUARD_ATTESTATION=%s and a reason containing %q", w.img, entry, w.field, w.reason)
		}
	}
	time.Sleep(4 * time.Second) // one more resync
	for _, w := range f.wants() {
		if w.allowed {
			requireImage(t, e, f.ref(w.img), "")
		}
	}
}

// The containerd guard judges each record's target digest, and a scan
// that was fresh when an image arrived but has grown stale since is
// judged again at a later resync: the image goes then.
func TestAttestationContainerdGuard(t *testing.T) {
	ForEachContainerd(t, testAttestationContainerdGuard)
}

func testAttestationContainerdGuard(t *testing.T, e *Env) {
	f := newAttFixtures(t, e)
	const ns = "default"
	// Fresh for 2 more minutes: a scan finished a minute ago under a 3-minute limit.
	ageing := "fresh/ageing:1" // under its own rule only
	f.digests[ageing] = f.reg.pushRandom(t, ageing)
	f.attest(t, ageing, "builder.key", "slsaprovenance1", provenancePredicate("https://github.com/acme/builder"), true)
	f.attest(t, ageing, "scanner.key", "vuln", vulnPredicate(time.Now().Add(-time.Minute), 0), false)
	pol := WritePolicy(t, "", fmt.Sprintf(`mode: enforce
allow:
  - image: %[1]s/fresh/**
    attestations:
      - type: %[3]s
        signed-by: [{key: %[2]s}]
        condition: 'now - timestamp(predicate.metadata.scanFinishedOn) < duration("3m")'
`, f.reg.addr, f.scanner, vulnScanType)+f.rules())
	d := startContainerdGuard(t, e, pol, "--resync-interval", "3s")
	for _, w := range f.wants() {
		ctrPull(t, e, ns, f.ref(w.img))
	}
	ctrPull(t, e, ns, f.ref(ageing))
	for _, w := range f.wants() {
		if w.allowed {
			continue
		}
		waitCtrImageGone(t, e, ns, f.ref(w.img))
		entry := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=removed", "PULLGUARD_RUNTIME=containerd", "PULLGUARD_IMAGE="+f.ref(w.img))
		if entry["PULLGUARD_ATTESTATION"] != w.field || !strings.Contains(entry["PULLGUARD_REASON"], w.reason) {
			t.Errorf("%s: removed entry %q, want PULLGUARD_ATTESTATION=%s and a reason containing %q", w.img, entry, w.field, w.reason)
		}
	}
	imgs := strings.Join(e.CtrImages(t, ns), " ")
	for _, img := range []string{attGood, attGoodBundle, attRescanOK, ageing} {
		if !strings.Contains(imgs, f.ref(img)) {
			t.Errorf("%s was removed: %q", img, imgs)
		}
	}
	// The scan turns stale 2 minutes after the start; a verdict resting on
	// it is kept a minute at most, and the next resync removes the image.
	Eventually(t, 4*time.Minute, func() (bool, string) {
		imgs := e.CtrImages(t, ns)
		return !strings.Contains(strings.Join(imgs, " "), f.ref(ageing)), "the image whose scan grew stale is still there"
	})
	entry := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=removed", "PULLGUARD_IMAGE="+f.ref(ageing))
	if entry["PULLGUARD_ATTESTATION"] != "failed:"+vulnScanType || entry["PULLGUARD_EVENT"] != "reconcile" {
		t.Errorf("entry for the image whose scan grew stale: %q", entry)
	}
	if imgs := strings.Join(e.CtrImages(t, ns), " "); !strings.Contains(imgs, f.ref(attGood)) {
		t.Errorf("the image with a fresh scan is gone: %q", imgs)
	}
}

// waitEntryFor waits for an entry matching matches whose PULLGUARD_IMAGE
// is ref, with or without the digest it was judged with.
func waitEntryFor(t *testing.T, d *Pullguard, ref string, matches ...string) map[string]string {
	t.Helper()
	var found map[string]string
	Eventually(t, actDeadline, func() (bool, string) {
		for _, e := range d.Entries(t, matches...) {
			if img := e["PULLGUARD_IMAGE"]; img == ref || strings.HasPrefix(img, ref+"@") {
				found = e
				return true, ""
			}
		}
		return false, "no entry " + strings.Join(matches, " ") + " for " + ref
	})
	return found
}
