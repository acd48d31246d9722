package authz

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

// pullSignatures resolves tags as a registry would (a tag it does not know:
// the registry cannot be reached) and answers for digests by the fake.
type pullSignatures struct {
	*enforcertest.Signatures
	tags map[string]string // normalized tag reference -> manifest digest
}

func (f pullSignatures) Decide(_ context.Context, p *policy.Policy, ref string, now time.Time) policy.Decision {
	digest, ok := f.tags[ref]
	if !ok {
		r, err := p.ParseRef(ref)
		if err != nil {
			panic(err)
		}
		ks := p.Decide(ref, now).NeedsEvidence()
		return p.DecideEvidence(r, now, &policy.Evidence{Results: map[string]policy.SignatureResult{
			ks.ID: {Status: policy.SignatureUnverifiable, Reason: "cannot resolve " + ref + " at the registry (connection refused)"}}})
	}
	// A pull fetches from the registry it names: no provenance to ask for.
	return p.Judge(policy.Image{Names: []string{ref}, Digest: digest, Pulling: true}, now, signaturesOnly{f}).Decision
}

// signaturesOnly answers for signatures; nobody asks where a pull's content
// came from.
type signaturesOnly struct{ pullSignatures }

func (signaturesOnly) Serves(string, string) (bool, error) {
	panic("asked where a pull's content came from")
}

// Before a pull the plugin verifies the digest the tag resolves to: a
// signed image is pulled, an unsigned one and one whose registry cannot be
// reached are refused, saying why; a container is created from a local
// image only when its repository digest is signed.
func TestSignaturesBeforeThePull(t *testing.T) {
	key, err := filepath.Abs("../../policy/testdata/keys/ed25519.pub")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(
		"mode: enforce\nallow:\n  - image: " + reg + "/approved/**\n    signed-by: [{key: " + key + "}]\n")})
	if err != nil {
		t.Fatal(err)
	}
	signed, unsigned := "sha256:"+strings.Repeat("5", 64), "sha256:"+strings.Repeat("6", 64)
	sigs := pullSignatures{
		Signatures: enforcertest.NewSignatures(map[string]policy.SignatureStatus{signed: policy.SignatureVerified}),
		tags:       map[string]string{reg + "/approved/busybox:1.0": signed, reg + "/approved/busybox:2.0": unsigned},
	}
	pull := func(tag string) string {
		return rawCall("POST", "/v1.43/images/create?fromImage="+reg+"/approved/busybox&tag="+tag, noBody, "")
	}
	for _, tc := range []struct {
		name, call, want string
		field            string // PULLGUARD_SIGNATURE of the refusal
	}{
		{"signed pull", pull("1.0"), "", ""},
		{"unsigned pull", pull("2.0"), "the registry says missing", "missing"},
		{"unreachable registry", pull("3.0"), "cannot resolve " + reg + "/approved/busybox:3.0 at the registry (connection refused)", "unverifiable"},
		// okID's names: busybox:1.0 and busybox@sha256:555...: signed.
		{"container from a signed image", rawCall("POST", "/v1.43/containers/create", jsonHeaders(createBody(reg+"/approved/busybox:1.0")), createBody(reg+"/approved/busybox:1.0")), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, p)
			f.srv.signatures = sigs
			f.srv.evidence = evidence.New(sigs, nil, logrus.StandardLogger())
			res := f.call(t, pathAuthZReq, tc.call)
			if tc.want == "" {
				if !res.Allow {
					t.Fatalf("refused: %q", res.Msg)
				}
				return
			}
			if res.Allow || !strings.Contains(res.Msg, tc.want) {
				t.Fatalf("allow=%v msg %q, want a refusal saying %q", res.Allow, res.Msg, tc.want)
			}
			recs := f.rec.all()
			if len(recs) != 1 || recs[0].Decision.Signature == nil {
				t.Fatalf("records %+v", recs)
			}
			if field := recs[0].Decision.Signature.Result.Field(); field != tc.field {
				t.Errorf("PULLGUARD_SIGNATURE would be %q, want %q", field, tc.field)
			}
		})
	}

	// Without a verifier, the same signed pull is refused (fail closed).
	f := newFixture(t, p)
	if res := f.call(t, pathAuthZReq, pull("1.0")); res.Allow {
		t.Error("a pull a signed-by rule names is allowed without verification")
	}
}
