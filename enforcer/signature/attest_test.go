package signature

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/policy"
)

// attestPolicy requires provenance and a fresh clean scan under
// attested/**, a signature under signed/**, nothing under open/**.
func attestPolicy(t testing.TB, host string) *policy.Policy {
	t.Helper()
	key := keyPath(t)
	yaml := `mode: enforce
allow:
  - image: ` + host + `/attested/**
    attestations:
      - type: https://slsa.dev/provenance/v1
        signed-by: [{key: ` + key + `}]
        condition: 'predicate.runDetails.builder.id.startsWith("https://github.com/acme/")'
      - type: https://cosign.sigstore.dev/attestation/vuln/v1
        signed-by: [{key: ` + key + `}]
        condition: 'now - timestamp(predicate.metadata.scanFinishedOn) < duration("168h") && predicate.scanner.result.critical == 0'
  - image: ` + host + `/signed/**
    signed-by: [{key: ` + key + `}]
  - image: ` + host + `/open/**
`
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.LoadFiles([]string{path}, policy.LoadOptions{InsecurePermissions: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func verifiedStatements(k *policy.Key) map[string][]policy.Statement {
	return map[string][]policy.Statement{
		"https://slsa.dev/provenance/v1": {{PredicateType: "https://slsa.dev/provenance/v1", Key: k, Format: formatBundle,
			Predicate: map[string]any{"runDetails": map[string]any{"builder": map[string]any{"id": "https://github.com/acme/b"},
				"metadata": map[string]any{"finishedOn": "2026-11-30T10:00:00Z"}}}}},
		"https://cosign.sigstore.dev/attestation/vuln/v1": {{PredicateType: "https://cosign.sigstore.dev/attestation/vuln/v1", Key: k, Format: formatClassic,
			Predicate: map[string]any{"scanner": map[string]any{"result": map[string]any{"critical": 0.0}},
				"metadata": map[string]any{"scanFinishedOn": "2026-11-30T11:00:00Z"}}}},
	}
}

// What the registry held becomes the answer for each type: verified
// statements of it, others' statements (invalid), none (missing), or no
// answer at all (unverifiable); and check --offline's answer.
func TestAttestationAnswers(t *testing.T) {
	p := attestPolicy(t, "registry.example.com")
	prov, vuln := p.Allow[0].Attestations[0], p.Allow[0].Attestations[1]
	k := prov.SignedBy.Keys[0]
	f := found{where: "sha256:aa in registry.example.com/attested/app", verified: map[string][]policy.Statement{prov.Type: verifiedStatements(k)[prov.Type]},
		others: map[string]*tally{vuln.Type: {counts: map[finding]int{byOtherKey: 2, forOtherDigest: 1}}}}
	if res := f.result(prov); res.Status != policy.AttestationVerified || len(res.Statements) != 1 {
		t.Errorf("provenance: %+v", res)
	}
	res := f.result(vuln)
	if want := "no attestation of type " + vuln.Type + " signed by " + k.Path + " for sha256:aa in registry.example.com/attested/app: " +
		"1 attestation by a listed key for another digest, 2 attestations by another key"; res.Status != policy.AttestationInvalid || res.Reason != want {
		t.Errorf("scan by others:\n got %s %q\nwant invalid %q", res.Status, res.Reason, want)
	}
	f.others, f.malformed = nil, 1
	if res := f.result(vuln); res.Status != policy.AttestationMissing || !strings.HasSuffix(res.Reason, "(one signed by "+k.Path+" is required); 1 unreadable attestation") {
		t.Errorf("no scan: %+v", res)
	}
	f.fetchErr = errors.New("connection refused")
	if res := f.result(prov); res.Status != policy.AttestationUnverifiable || !strings.Contains(res.Reason, "could not be read from the registry") {
		t.Errorf("registry down, even with a verified statement read: %+v", res)
	}
	d := Decide(context.Background(), nil, p, "registry.example.com/attested/app:1", testNow)
	if d.Allowed || !strings.HasSuffix(d.Reason, ReasonAttestationsOffline) || d.Attestation.Field() != "unverifiable:"+prov.Type {
		t.Errorf("offline: %v %q", d.Allowed, d.Reason)
	}
}

// BenchmarkAttestationsCached is pullguard check's decision on a reference
// an attestations rule covers, both types' verified statements cached
// (the conditions evaluated each time), beside the same decision for a
// signed-by rule with its answer cached and for a rule requiring neither,
// in the same run. Goal: at most 2× the signed-by decision.
func BenchmarkAttestationsCached(b *testing.B) {
	p := attestPolicy(b, "registry.example.com")
	v := New(registry.New(registry.Options{}))
	const digest = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	qs := p.Allow[0].Attestations
	ks := p.Allow[1].SignedBy
	v.attests.store("registry.example.com/attested/app@"+digest+"#"+qs[0].SignedBy.ID,
		found{where: digest, verified: verifiedStatements(qs[0].SignedBy.Keys[0])})
	v.cache.store("registry.example.com/signed/app@"+digest+"#"+ks.ID, policy.SignatureResult{Status: policy.SignatureVerified, Key: ks.Keys[0], Reason: "signed"})
	ctx := context.Background()
	attested, signed, open := "registry.example.com/attested/app@"+digest, "registry.example.com/signed/app@"+digest, "registry.example.com/open/app@"+digest
	for _, ref := range []string{attested, signed, open} {
		if d := Decide(ctx, v, p, ref, testNow); !d.Allowed {
			b.Fatalf("%s: cached answers not used: %s", ref, d.Reason)
		}
	}
	const batch = 64
	var attT, sigT, baseT []float64
	timeIt := func(ref string) float64 {
		start := time.Now()
		for i := 0; i < batch; i++ {
			Decide(ctx, v, p, ref, testNow)
		}
		return float64(time.Since(start).Nanoseconds()) / batch
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i += batch {
		attT = append(attT, timeIt(attested))
		sigT = append(sigT, timeIt(signed))
		baseT = append(baseT, timeIt(open))
	}
	a50, a99 := percentiles(attT)
	s50, s99 := percentiles(sigT)
	b50, b99 := percentiles(baseT)
	b.ReportMetric(a50, "p50-ns/attested-decision")
	b.ReportMetric(a99, "p99-ns/attested-decision")
	b.ReportMetric(s50, "p50-ns/signed-decision")
	b.ReportMetric(s99, "p99-ns/signed-decision")
	b.ReportMetric(b50, "p50-ns/baseline-decision")
	b.ReportMetric(b99, "p99-ns/baseline-decision")
	b.ReportMetric(a50/s50, "ratio-attested/signed")
	b.ReportMetric(0, "ns/op")
}
