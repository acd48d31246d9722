package integration

// Keyless signers (signed-by: issuer + subject) end to end, against
// signatures made by the real cosign CLI with certificates of a test CA
// and timestamps of a real timestamp authority, verified offline against
// the policy's trusted root.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/enforcer/signature"
	"github.com/pullguard/pullguard/policy"
)

// What pullguard must say of each keyless fixture: every field of the
// signer constrains, the time comes from the root's timestamp authority,
// and the certificate must chain to the root's CA.
var keylessWant = map[string]struct {
	allowed   bool
	signature string
	reason    string
}{
	"keyless/uri:1.0":          {true, "identity:" + ghIssuer + " " + ghSubject, "signed by " + ghIssuer + " " + ghSubject + " (keyless, cosign signature)"},
	"keyless/email-bundle:1.0": {true, "identity:" + googleIssuer + " " + googleEmail, "signed by " + googleIssuer + " " + googleEmail + " (keyless, Sigstore bundle)"},
	"keyless/wrong-issuer:1.0": {false, "invalid", "1 signature by another signer (https://token.actions.githubusercontent.com.evil.example " + ghSubject + ")"},
	"keyless/wrong-subject:1.0": {false, "invalid", "1 signature by another signer (" + ghIssuer +
		" https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1.0)"},
	"keyless/prefix-uri:1.0":   {false, "invalid", "1 signature by another signer (" + ghIssuer + " " + ghSubject + "-evil)"},
	"keyless/prefix-email:1.0": {false, "invalid", "1 signature by another signer (" + googleIssuer + " " + googleEmail + ".evil.example)"},
	"keyless/other-ca:1.0":     {false, "invalid", "1 keyless signature not trusted (its certificate does not chain to a CA of the trusted root at the time it was used)"},
	"keyless/expired:1.0":      {false, "invalid", "1 keyless signature not trusted (its certificate does not chain to a CA of the trusted root at the time it was used)"},
	"keyless/no-timestamp:1.0": {false, "invalid", "1 keyless signature not trusted (no timestamp authority or transparency log of the trusted root says when it was signed)"},
}

func TestKeylessCheck(t *testing.T) {
	e := RequireEnv(t)
	f := newKeylessFixtures(t, e)
	bin := BuildPullguard(t)
	pol := f.policy(t)
	var refs []string
	for _, k := range keylessImages {
		refs = append(refs, f.ref(k.img))
	}
	got, code := runCheck(t, bin, pol, nil, refs...)
	if code != 1 {
		t.Errorf("exit status %d, want 1 (some denied)", code)
	}
	for _, k := range keylessImages {
		w := keylessWant[k.img]
		c, ok := got[f.ref(k.img)]
		if !ok {
			t.Errorf("%s: no line in check's output", k.img)
			continue
		}
		if c.Allowed != w.allowed || c.Signature != w.signature || !strings.Contains(c.Reason, w.reason) {
			t.Errorf("%s:\n got allowed=%v signature=%q reason=%q\nwant allowed=%v signature=%q reason containing %q",
				k.img, c.Allowed, c.Signature, c.Reason, w.allowed, w.signature, w.reason)
		}
	}
}

// containerd's image verifier (verify-image) admits what the right signer
// signed and refuses every other fixture, saying why.
func TestKeylessVerifyImage(t *testing.T) {
	e := RequireEnv(t)
	f := newKeylessFixtures(t, e)
	bin := BuildPullguard(t)
	pol := f.policy(t)
	for _, k := range keylessImages {
		repo, tag, _ := strings.Cut(k.img, ":")
		desc := fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":1}`, f.digests[k.img])
		cmd := exec.Command(bin, "verify-image", "-name", f.reg.addr+"/"+repo+":"+tag,
			"-digest", f.digests[k.img], "-stdin-media-type", "application/vnd.oci.descriptor.v1+json")
		cmd.Stdin = strings.NewReader(desc)
		cmd.Env = append(os.Environ(), "PULLGUARD_POLICY="+pol)
		out, err := cmd.Output()
		code, w := exitStatus(t, err), keylessWant[k.img]
		if (code == 0) != w.allowed || !strings.Contains(string(out), w.reason) {
			t.Errorf("verify-image %s: exit %d %q, want allowed=%v with %q", k.img, code, out, w.allowed, w.reason)
		}
	}
}

// The authorization plugin pulls and runs what the right signer signed and
// refuses the wrong issuer, the wrong subject and the look-alike subjects,
// saying why; the Docker guard removes them when they were pulled before
// it ran, with the reasons in the journal.
func TestKeylessDocker(t *testing.T) {
	ForEachDocker(t, testKeylessDocker)
}

func testKeylessDocker(t *testing.T, e *Env) {
	f := newKeylessFixtures(t, e)
	pol := f.policy(t)
	refused := []string{"keyless/wrong-issuer:1.0", "keyless/wrong-subject:1.0", "keyless/prefix-uri:1.0", "keyless/prefix-email:1.0"}

	// Pulled while nothing guards the host.
	for _, img := range refused {
		e.Docker(t, "pull", "--quiet", f.ref(img))
	}
	d := startDockerGuard(t, e, pol, "--resync-interval", "3s")
	for _, img := range refused {
		waitImageGone(t, e, f.ref(img))
		removed := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=removed", "PULLGUARD_IMAGE="+f.ref(img))
		if w := keylessWant[img]; removed["PULLGUARD_SIGNATURE"] != w.signature || !strings.Contains(removed["PULLGUARD_REASON"], w.reason) {
			t.Errorf("removed entry for %s: %q, want signature %q and reason containing %q", img, removed, w.signature, w.reason)
		}
	}
	if err := d.Stop(t); err != nil {
		t.Fatal(err)
	}

	d, plugin := startAuthzGuard(t, e, pol)
	good := "keyless/uri:1.0"
	e.Docker(t, "pull", "--quiet", f.ref(good))
	requireImage(t, e, f.ref(good), "")
	e.Docker(t, "pull", "--quiet", f.ref("keyless/email-bundle:1.0"))
	requireImage(t, e, f.ref("keyless/email-bundle:1.0"), "")
	for _, img := range refused {
		_, err := e.DockerErr(t, "pull", f.ref(img))
		requireRefused(t, err, plugin, deniedBy(plugin, f.ref(img)+"@"+f.digests[img]), keylessWant[img].reason)
		if e.ImageExists(t, f.ref(img)) {
			t.Errorf("%s landed despite the refusal", f.ref(img))
		}
	}
	blocked := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=blocked", "PULLGUARD_EVENT=authz")
	if blocked["PULLGUARD_SIGNATURE"] != "invalid" || !strings.Contains(blocked["PULLGUARD_REASON"], "by another signer") {
		t.Errorf("blocked entry: %q", blocked)
	}
	// The signed image is created and stays (a random image has no
	// command to run; creating it is what the plugin judges).
	e.Docker(t, "create", "--name", "keyless-"+UniqueName(t), f.ref(good), "true")
	time.Sleep(2 * time.Second)
	requireImage(t, e, f.ref(good), "")
	if n := len(d.Entries(t, "PULLGUARD_IMAGE="+f.ref(good), "PULLGUARD_ACTION=removed")); n > 0 {
		t.Errorf("the image signed by the right identity was removed %d times", n)
	}
}

// The containerd guard keeps the record the right signer signed and
// deletes the ones a wrong issuer, a wrong subject or a look-alike subject
// signed, each with its reason in the journal.
func TestKeylessContainerd(t *testing.T) {
	ForEachContainerd(t, testKeylessContainerd)
}

func testKeylessContainerd(t *testing.T, e *Env) {
	f := newKeylessFixtures(t, e)
	const ns = "default"
	d := startContainerdGuard(t, e, f.policy(t), "--resync-interval", "3s")
	good := "keyless/email-bundle:1.0"
	refused := []string{"keyless/wrong-issuer:1.0", "keyless/wrong-subject:1.0", "keyless/prefix-uri:1.0", "keyless/prefix-email:1.0"}
	for _, img := range append([]string{good}, refused...) {
		ctrPull(t, e, ns, f.ref(img))
	}
	for _, img := range refused {
		waitCtrImageGone(t, e, ns, f.ref(img))
		removed := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=removed", "PULLGUARD_IMAGE="+f.ref(img))
		if w := keylessWant[img]; removed["PULLGUARD_SIGNATURE"] != w.signature || !strings.Contains(removed["PULLGUARD_REASON"], w.reason) {
			t.Errorf("removed entry for %s: %q, want signature %q and reason containing %q", img, removed, w.signature, w.reason)
		}
	}
	time.Sleep(4 * time.Second) // one more resync
	if imgs := e.CtrImages(t, ns); !strings.Contains(strings.Join(imgs, " "), f.ref(good)) {
		t.Errorf("the record the right signer signed is gone: %q", imgs)
	}
}

// BenchmarkKeylessVerify is an uncached keyless verification (a fresh
// verifier each round: the trusted root is parsed again too) against the
// local registry, for each format, beside the key-based verification of
// the same format in the same run, and a cached keyless answer.
func BenchmarkKeylessVerify(b *testing.B) {
	e := RequireEnv(b)
	keyed := newSigFixtures(b, e)
	kl := newKeylessFixtures(b, e)
	load := func(path string) *policy.KeySet {
		p, err := policy.Load(path, policy.LoadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return p.Allow[0].SignedBy
	}
	keys, ids := load(keyed.policy(b)), load(kl.policy(b))
	reg := registry.New(registry.Options{})
	ctx := context.Background()
	const rounds = 100
	timed := func(addr, img, digest string, ks *policy.KeySet, v func() *signature.Verifier) (float64, float64) {
		repo, _, _ := strings.Cut(img, ":")
		var xs []time.Duration
		for i := 0; i < rounds; i++ {
			start := time.Now()
			if r := v().Verify(ctx, addr+"/"+repo, digest, ks); r.Status != policy.SignatureVerified {
				b.Fatalf("%s: %s: %s", img, r.Status, r.Reason)
			}
			xs = append(xs, time.Since(start))
		}
		return millis(percentile(xs, 50)), millis(percentile(xs, 99))
	}
	fresh := func() *signature.Verifier { return signature.New(reg) }
	warm := signature.New(reg)
	cached := func() *signature.Verifier { return warm }
	for i := 0; i < b.N; i++ {
		kc50, kc99 := timed(keyed.reg.addr, imgClassic, keyed.digests[imgClassic], keys, fresh)
		kb50, kb99 := timed(keyed.reg.addr, imgBundle, keyed.digests[imgBundle], keys, fresh)
		lc50, lc99 := timed(kl.reg.addr, "keyless/uri:1.0", kl.digests["keyless/uri:1.0"], ids, fresh)
		lb50, lb99 := timed(kl.reg.addr, "keyless/email-bundle:1.0", kl.digests["keyless/email-bundle:1.0"], ids, fresh)
		cc50, cc99 := timed(kl.reg.addr, "keyless/uri:1.0", kl.digests["keyless/uri:1.0"], ids, cached)
		kk50, kk99 := timed(keyed.reg.addr, imgClassic, keyed.digests[imgClassic], keys, cached)
		for _, m := range []struct {
			name     string
			p50, p99 float64
		}{
			{"key-classic", kc50, kc99}, {"key-bundle", kb50, kb99},
			{"keyless-classic", lc50, lc99}, {"keyless-bundle", lb50, lb99},
			{"keyless-cached", cc50, cc99}, {"key-cached", kk50, kk99},
		} {
			b.ReportMetric(m.p50, "p50-ms/"+m.name)
			b.ReportMetric(m.p99, "p99-ms/"+m.name)
		}
		b.ReportMetric(lc50/kc50, "ratio-classic/keyless-key")
		b.ReportMetric(lb50/kb50, "ratio-bundle/keyless-key")
	}
	b.ReportMetric(0, "ns/op")
}
