package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Provenance: under local-images: deny, an allowed name is not enough. The
// content must have come from a repository the policy allows. On dockerd's
// own image store the evidence is a digest name of the image
// (repo@sha256:…) that the policy allows: dockerd records one per
// repository it pulled the content from or pushed it to, and nothing else
// can put one there (dockerd refuses a digest in tag, load, import, build
// and commit, and checks every pulled manifest against its digest). On
// containerd and on Docker 29's containerd image store a digest name
// proves nothing — `ctr images tag`, `ctr images import` of an archive
// naming the content <repo>@<its own digest>, and a CRI pull all make the
// same record — so there such names are set aside (Image.
// DigestNamesProveOrigin false) and only a registry that serves the digest
// in an allowed repository vouches (Judge asks the EvidenceSource).

// reasonNotFromAllowed begins the reason of every name denied for want of
// provenance.
const reasonNotFromAllowed = "content did not come from an allowed repository"

// ReasonLocalContent is the reason of a name denied for want of provenance
// when the image has no digest name at all.
const ReasonLocalContent = reasonNotFromAllowed + " (built or loaded on this host)"

// ForWantOfProvenance reports whether d denies a name the policy allows
// only because the content did not come from an allowed repository: no
// rule, and not the default, decided it.
func (d Decision) ForWantOfProvenance() bool {
	return !d.Allowed && strings.HasPrefix(d.Reason, reasonNotFromAllowed)
}

// reasonLocalNoName decides an image with no name under local-images: deny.
const reasonLocalNoName = "the image has no name and its " + ReasonLocalContent

// requireProvenance records which allowed digest name vouches for an
// image's content (under either setting, for scan), and under local-images:
// deny denies every allowed tag of an image that none vouches for. It runs
// once every name has been decided on its own.
func (p *Policy) requireProvenance(out *ImageDecision, refs []Ref, errs []error) {
	pulledFrom := ""
	for i, nd := range out.Names {
		if errs[i] != nil || nd.ImageID || refs[i].Tag != "" || refs[i].Digest == "" {
			continue
		}
		if nd.Decision.Allowed {
			out.VouchedBy = refs[i].String
			return
		}
		if pulledFrom == "" {
			pulledFrom = refs[i].String
		}
	}
	if p.LocalImages != LocalImagesDeny {
		return
	}
	reason := ReasonLocalContent
	if pulledFrom != "" {
		reason = fmt.Sprintf("%s (it came from %s)", reasonNotFromAllowed, pulledFrom)
	}
	for i := range out.Names {
		nd := &out.Names[i]
		if nd.ImageID || !nd.Decision.Allowed {
			continue
		}
		nd.Unproven = true
		nd.Decision.Allowed = false
		nd.Decision.Rule, nd.Decision.Resembles = nil, ""
		nd.Decision.Reason = reason
	}
}

// namesOnly is the policy with local-images: allow: for judging names
// being pulled (Image.Pulling), where the pull is the provenance.
func (p *Policy) namesOnly() *Policy {
	if p.LocalImages == LocalImagesAllow {
		return p
	}
	c := *p
	c.LocalImages = LocalImagesAllow
	return &c
}

// NotVouchedFor is v with every name left undecided for want of
// provenance (no registry answered where its content came from) denied
// for that, the reason saying why (e.g. since when no registry answered):
// for content that may not stay undecided any longer, or may not run
// while it is (enforcer/evidence). A name undecided for want of a
// signature answer stays undecided, and with it the verdict.
func (v Verdict) NotVouchedFor(why string) Verdict {
	if v.Outcome != Undecided {
		return v
	}
	v.Names = slices.Clone(v.Names)
	undecided, denied := -1, -1
	for i := range v.Names {
		n := &v.Names[i]
		if n.ImageID {
			continue
		}
		if n.Outcome == Undecided && n.Unproven {
			n.Outcome = Denied
			n.Decision.Allowed, n.Decision.Rule, n.Decision.Resembles = false, nil, ""
			n.Decision.Reason = fmt.Sprintf("%s (%s)", reasonNotFromAllowed, why)
		}
		switch {
		case n.Outcome == Undecided && undecided < 0:
			undecided = i
		case n.Outcome == Denied && denied < 0:
			denied = i
		}
	}
	switch {
	case undecided >= 0:
		v.Decision = v.Names[undecided].Decision
		return v
	case denied >= 0:
		v.Decision = v.Names[denied].Decision
	}
	v.Outcome, v.Err = Denied, nil
	for i := range v.Names {
		if v.Names[i].ImageID {
			v.Names[i].Outcome = Denied
		}
	}
	return v
}
