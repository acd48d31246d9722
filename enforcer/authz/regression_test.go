package authz

import (
	"context"
	"strings"
	"testing"

	"github.com/pullguard/pullguard/policy"
)

// Regression (safety review): docker run of a local image named by tag whose manifest digest a deny
// rule lists is allowed: the names are judged without the digest.
func TestRegressionCreateOfDeniedDigest(t *testing.T) {
	bad := "sha256:" + strings.Repeat("b", 64)
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(
		"mode: enforce\ndefault: deny\nallow:\n  - image: reg.example/app\ndeny:\n  - image: reg.example/app\n    digests: [\"" + bad + "\"]\n")})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, p)
	f.images.images["reg.example/app:v1"] = LocalImage{ID: okID, Names: []string{"reg.example/app:v1", "reg.example/app@" + bad}}
	req := &Request{RequestMethod: "POST", RequestURI: "/v1.41/containers/create",
		RequestHeaders: map[string]string{"Content-Type": "application/json", "Content-Length": "30"},
		RequestBody:    []byte(`{"Image":"reg.example/app:v1"}`)}
	if res := f.srv.authorize(context.Background(), req); res.Allow {
		t.Errorf("container of a denied digest allowed")
	}
}
