package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestProvenance pins what local-images: deny adds to DecideImage: an
// allowed name counts only on content an allowed digest name vouches for.
func TestProvenance(t *testing.T) {
	const (
		dA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		dB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		id = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	)
	policy := func(local, def string) *Policy {
		src := "default: " + def + "\n"
		if local != "" {
			src += "local-images: " + local + "\n"
		}
		src += `allow:
  - image: reg.example/approved/**
  - image: docker.io/library/*
    tags: ["1.*"]
deny:
  - image: reg.example/evil/**
`
		return parsePolicy(t, src)
	}
	deny, allow, open := policy("", "deny"), policy("allow", "deny"), policy("", "allow")
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		p         *Policy
		names     []string
		allowed   bool
		vouchedBy string
		denied    []string // names to remove
		reason    string   // part of the deciding reason
	}{
		{"pulled: the tag and the digest Docker recorded", deny,
			[]string{"reg.example/approved/x:1", "reg.example/approved/x@" + dA}, true, "reg.example/approved/x@" + dA, nil, "allow rule"},
		{"approved content re-tagged to another allowed name", deny,
			[]string{"reg.example/approved/x:1", "reg.example/approved/other:2", "reg.example/approved/x@" + dA}, true,
			"reg.example/approved/x@" + dA, nil, "allow rule"},
		{"the re-tagged name after the original tag went: the digest alone vouches", deny,
			[]string{"reg.example/approved/other:2", "reg.example/approved/x@" + dA}, true, "reg.example/approved/x@" + dA, nil, "allow rule"},
		{"a digest that follows a tag-restricted allow rule vouches", deny,
			[]string{"nginx:1.25", "nginx@" + dA, "reg.example/approved/nginx:1.25"}, true, "docker.io/library/nginx@" + dA, nil, "allow rule"},
		{"a tag outside the rule's tags gets no voucher from its digest", deny,
			[]string{"nginx:latest", "nginx@" + dA}, false, "", []string{"nginx:latest", "nginx@" + dA}, "no allow rule"},
		{"loaded, imported, built or committed: no digest name", deny,
			[]string{"reg.example/approved/x:1"}, false, "", []string{"reg.example/approved/x:1"}, ReasonLocalContent},
		{"an image ID is no evidence", deny,
			[]string{id, "reg.example/approved/x:1"}, false, "", []string{"reg.example/approved/x:1"}, ReasonLocalContent},
		{"disallowed content re-tagged with an approved name", deny,
			[]string{"reg.example/approved/y:1", "reg.example/evil/x:1", "reg.example/evil/x@" + dB}, false, "",
			[]string{"reg.example/approved/y:1", "reg.example/evil/x:1", "reg.example/evil/x@" + dB}, "it came from reg.example/evil/x@" + dB},
		{"pushed to an allowed repository: the push recorded a digest", deny,
			[]string{"reg.example/approved/built:1", "reg.example/approved/built@" + dA}, true, "reg.example/approved/built@" + dA, nil, "allow rule"},
		{"a lone allowed digest name is its own provenance", deny,
			[]string{"reg.example/approved/x@" + dA}, true, "reg.example/approved/x@" + dA, nil, "allow rule"},
		{"default allow does not vouch for local content", open,
			[]string{"reg.example/elsewhere/x:1"}, false, "", []string{"reg.example/elsewhere/x:1"}, ReasonLocalContent},
		{"default allow: a digest no rule denies vouches", open,
			[]string{"reg.example/elsewhere/x:1", "reg.example/elsewhere/x@" + dA}, true, "reg.example/elsewhere/x@" + dA, nil, "default is allow"},
		{"no name at all, default allow: made here", open, []string{id}, false, "", nil, "no name"},
		{"local-images: allow judges the name alone", allow,
			[]string{"reg.example/approved/x:1"}, true, "", nil, "allow rule"},
		{"local-images: allow still says what vouches (scan shows it)", allow,
			[]string{"reg.example/approved/x:1", "reg.example/approved/x@" + dA}, true, "reg.example/approved/x@" + dA, nil, "allow rule"},
		{"local-images: allow still denies a disallowed name", allow,
			[]string{"reg.example/evil/x:1"}, false, "", []string{"reg.example/evil/x:1"}, "deny rule"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := c.p.DecideImage(c.names, "", now)
			if d.Allowed != c.allowed || d.Decision.Allowed != c.allowed {
				t.Errorf("allowed %v (decision %v), want %v (%s)", d.Allowed, d.Decision.Allowed, c.allowed, d.Decision.Reason)
			}
			if d.VouchedBy != c.vouchedBy {
				t.Errorf("vouched by %q, want %q", d.VouchedBy, c.vouchedBy)
			}
			if !strings.Contains(d.Decision.Reason, c.reason) {
				t.Errorf("reason %q, want it to contain %q", d.Decision.Reason, c.reason)
			}
			var denied []string
			for _, n := range d.Denied() {
				denied = append(denied, n.Name)
			}
			if strings.Join(denied, " ") != strings.Join(c.denied, " ") {
				t.Errorf("denied %q, want %q", denied, c.denied)
			}
			for _, n := range d.Names {
				if n.Unproven && (n.Decision.Allowed || n.Decision.Rule != nil || !n.Decision.ForWantOfProvenance()) {
					t.Errorf("%s: unproven yet allowed=%v rule=%v", n.Name, n.Decision.Allowed, n.Decision.Rule)
				}
				if !n.Unproven && n.Decision.ForWantOfProvenance() {
					t.Errorf("%s: denied for want of provenance but not marked unproven", n.Name)
				}
			}
		})
	}
}

// TestNotVouchedFor: names undecided for want of provenance are denied for
// it, with the reason given; a signature left unanswered keeps the verdict
// undecided; a decided verdict is left as it is.
func TestNotVouchedFor(t *testing.T) {
	p := verdictPolicy(t, "deny")
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	down := errors.New("connection refused")
	ev := &askedEvidence{fail: map[string]error{"reg.example/approved/x": down}}
	img := Image{Names: []string{"reg.example/approved/x:1", "sha256:" + vA[len("sha256:"):]}, Digest: vA}
	v := p.Judge(img, now, ev)
	if v.Outcome != Undecided {
		t.Fatalf("outcome %s, want undecided", v.Outcome)
	}
	got := v.NotVouchedFor("no registry answered since then")
	if got.Outcome != Denied || got.Err != nil || got.Names[0].Outcome != Denied || got.Names[1].Outcome != Denied ||
		!got.Decision.ForWantOfProvenance() || !strings.HasSuffix(got.Decision.Reason, "(no registry answered since then)") {
		t.Errorf("NotVouchedFor: %s %+v", got.Outcome, got.Names)
	}
	if v.Names[0].Outcome != Undecided {
		t.Errorf("NotVouchedFor changed the verdict it was given")
	}
	allowed := p.Judge(Image{Names: []string{"reg.example/approved/x:1"}, Digest: vA}, now, &askedEvidence{served: map[string]bool{"reg.example/approved/x": true}})
	if got := allowed.NotVouchedFor("x"); got.Outcome != Allowed {
		t.Errorf("an allowed verdict became %s", got.Outcome)
	}
}
