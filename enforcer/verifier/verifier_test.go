package verifier

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pullguard/pullguard/policy"
)

var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func loadFixture(t testing.TB, name string) *policy.Policy {
	t.Helper()
	p, err := policy.LoadFiles([]string{"testdata/" + name}, policy.LoadOptions{InsecurePermissions: true})
	if err != nil {
		t.Fatalf("loading %s: %v", name, err)
	}
	return p
}

func TestVerify(t *testing.T) {
	enforce := loadFixture(t, "enforce.yaml")
	audit := loadFixture(t, "audit.yaml")
	cases := []struct {
		name    string
		policy  *policy.Policy
		ref     string
		digest  string
		allowed bool
		message string // exact
	}{
		{"approved tag gets the digest attached", enforce, "127.0.0.1:5000/approved/busybox:1.0", digestA, true,
			"pullguard: allowed: 127.0.0.1:5000/approved/busybox:1.0@" + digestA + " matches allow rule 127.0.0.1:5000/approved/** (testdata/enforce.yaml:5)"},
		{"unlisted repository denied", enforce, "127.0.0.1:5000/evil/miner:1.0", digestA, false,
			"pullguard: 127.0.0.1:5000/evil/miner:1.0@" + digestA + " is not allowed: no allow rule matches"},
		{"deny rule for a tag still applies with the digest attached", enforce, "127.0.0.1:5000/approved/busybox:latest", digestA, false,
			"pullguard: 127.0.0.1:5000/approved/busybox:latest@" + digestA + " is not allowed: matches deny rule ** tags [latest] (SEC-12 pin a version) (testdata/enforce.yaml:9)"},
		{"digest-pinned rule allows the pinned content pulled by tag", enforce, "ghcr.io/acme/pinned:v1", digestA, true,
			"pullguard: allowed: ghcr.io/acme/pinned:v1@" + digestA + " matches allow rule ghcr.io/acme/pinned digests [" + digestA + "] (testdata/enforce.yaml:6)"},
		{"digest-pinned rule denies other content under the same tag", enforce, "ghcr.io/acme/pinned:v1", digestB, false,
			"pullguard: ghcr.io/acme/pinned:v1@" + digestB + " is not allowed: no allow rule matches"},
		{"name already pinned to the resolved digest", enforce, "ghcr.io/acme/pinned@" + digestA, digestA, true,
			"pullguard: allowed: ghcr.io/acme/pinned@" + digestA + " matches allow rule ghcr.io/acme/pinned digests [" + digestA + "] (testdata/enforce.yaml:6)"},
		{"name pinned to another digest than resolved", enforce, "ghcr.io/acme/pinned@" + digestA, digestB, false,
			"pullguard: ghcr.io/acme/pinned@" + digestA + " is not allowed: the reference pins " + digestA + " but the image's content is " + digestB},
		{"no digest judged by name alone", enforce, "127.0.0.1:5000/approved/busybox:1.0", "", true,
			"pullguard: allowed: 127.0.0.1:5000/approved/busybox:1.0 matches allow rule 127.0.0.1:5000/approved/** (testdata/enforce.yaml:5)"},
		{"unparsable name denied with the parser's reason", enforce, "127.0.0.1:5000/Evil/Miner:1", digestA, false,
			"pullguard: 127.0.0.1:5000/Evil/Miner:1 is not allowed: invalid reference: invalid reference format: repository name (Evil/Miner) must be lowercase"},
		{"image ID as name denied", enforce, digestA, digestA, false,
			"pullguard: " + digestA + " is not allowed: the image has no name to judge (it was given by ID, or its names are gone); the default is deny"},
		{"audit mode lets a denied pull through", audit, "127.0.0.1:5000/evil/miner:1.0", digestA, true,
			"pullguard: audit mode, would block: 127.0.0.1:5000/evil/miner:1.0@" + digestA + " is not allowed: no allow rule matches"},
		{"audit mode allowed", audit, "127.0.0.1:5000/approved/busybox:1.0", digestA, true,
			"pullguard: allowed: 127.0.0.1:5000/approved/busybox:1.0@" + digestA + " matches allow rule 127.0.0.1:5000/approved/** (testdata/audit.yaml:5)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			allowed, msg := Verify(tc.policy, testNow, tc.ref, tc.digest)
			if allowed != tc.allowed {
				t.Errorf("allowed = %v, want %v (%s)", allowed, tc.allowed, msg)
			}
			if msg != tc.message {
				t.Errorf("message:\n got %s\nwant %s", msg, tc.message)
			}
		})
	}
}

func TestJudgeCarriesTheDecision(t *testing.T) {
	r := Judge(loadFixture(t, "enforce.yaml"), testNow, "127.0.0.1:5000/evil/miner:1.0", digestA)
	if r.Allowed || r.Mode != policy.ModeEnforce {
		t.Fatalf("got allowed=%v mode=%s, want a denial in enforce mode", r.Allowed, r.Mode)
	}
	if want := "127.0.0.1:5000/evil/miner:1.0@" + digestA; r.Decision.Reference != want {
		t.Errorf("Decision.Reference = %q, want %q", r.Decision.Reference, want)
	}
}

func TestBound(t *testing.T) {
	cases := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"short kept", "a b", 10, "a b"},
		{"newlines folded into one line", "line one\nline two\r\n", 100, "line one line two"},
		{"long cut with an ellipsis", strings.Repeat("x", 20), 10, "xxxxxxx..."},
		{"cut never splits a character", "ab" + strings.Repeat("é", 10), 10, "abéé..."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := bound(tc.in, tc.max)
			if got != tc.want {
				t.Errorf("bound(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
			if len(got) > tc.max || !utf8.ValidString(got) {
				t.Errorf("bound(%q, %d) = %q: longer than the bound or not UTF-8", tc.in, tc.max, got)
			}
		})
	}
}

func TestVerifyMessageIsBounded(t *testing.T) {
	long := "127.0.0.1:5000/evil/" + strings.Repeat("a", 250) + "/" + strings.Repeat("b", 250) + ":1.0"
	p := loadFixture(t, "enforce.yaml")
	// Many paths long: the reference itself is bounded by the parser, the
	// message must be bounded however long the reason grows.
	_, msg := Verify(p, testNow, strings.Repeat(long, 8), digestA)
	if len(msg) > MaxMessageBytes {
		t.Fatalf("message is %d bytes, more than %d", len(msg), MaxMessageBytes)
	}
	if strings.Contains(msg, "\n") {
		t.Fatalf("message spans lines: %q", msg)
	}
}
