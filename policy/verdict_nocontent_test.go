package policy

import (
	"testing"
	"time"
)

// A digest name a runtime holds without saying which content it stands for
// (a containerd record that is gone, a container's Image field) vouches for
// nothing where digest names prove nothing: the name's own digest is what
// the writer chose. Under local-images: deny it is undecided, never allowed.
func TestDigestNameWithoutContentVouchesForNothing(t *testing.T) {
	p := verdictPolicy(t, "deny")
	name := "reg.example/approved/app@" + vA
	v := p.Judge(Image{Names: []string{name}}, time.Now(), &askedEvidence{})
	if v.Outcome == Allowed {
		t.Fatalf("%s alone, digest names proving nothing: allowed (%s), want not allowed", name, v.Decision.Reason)
	}
	if v.VouchedBy != "" {
		t.Errorf("VouchedBy = %q, want none", v.VouchedBy)
	}
	// Where digest names prove origin (dockerd's own store) it vouches.
	if v := p.Judge(Image{Names: []string{name}, DigestNamesProveOrigin: true}, time.Now(), nil); v.Outcome != Allowed {
		t.Errorf("with DigestNamesProveOrigin: %s, want allowed", v.Outcome)
	}
}
