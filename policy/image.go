package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file is the one answer to "may this image stay and run?", which
// every path asks: the Docker and containerd guards, the authorization
// plugin, the containerd image verifier and scan. The semantics are
// written once, in the README's "One image, one decision" section.

// NameDecision is the verdict on one of an image's names.
type NameDecision struct {
	// Name is the name as the caller gave it.
	Name string
	// Decision is the policy's decision on the name, with the content's
	// digest attached where it was judged with one (repo:tag@digest).
	Decision Decision
	// ImageID is set for a name that is an image ID (sha256:<hex>): an ID
	// says nothing about where the image came from and is not judged; it
	// follows the image's verdict.
	ImageID bool
	// Follows is set for a digest name (repo@sha256:...) that is allowed
	// only because a tag of its repository on the same image is: the
	// record of where that tag was pulled from.
	Follows bool
	// Unproven is set for a name the policy allows but denied because the
	// content did not come from an allowed repository (local-images: deny,
	// provenance.go).
	Unproven bool
}

// ImageDecision is the verdict on one image, with every name's verdict.
type ImageDecision struct {
	// Allowed: the image may stay and run, because one of its names is
	// allowed (or it has no name and the default is allow).
	Allowed bool
	// Decision explains the verdict: the first allowed name's decision, or
	// the first denied name's.
	Decision Decision
	// Names are the verdicts on each name, in the order given.
	Names []NameDecision
	// PolicyHash is the content hash of the policy that decided.
	PolicyHash string
	// VouchedBy is the allowed digest name (repo@sha256:...) that shows
	// the content came from an allowed repository, or empty (provenance.go).
	VouchedBy string
}

// Denied lists the names the policy does not allow: the names to remove.
// Image-ID names are not among them: they follow the image.
func (d ImageDecision) Denied() []NameDecision {
	var out []NameDecision
	for _, n := range d.Names {
		if !n.ImageID && !n.Decision.Allowed {
			out = append(out, n)
		}
	}
	return out
}

// Reasons of decisions DecideImage makes itself.
const (
	reasonNoNameAllow = "the image has no name to judge; the default is allow"
	reasonNoNameDeny  = "the image has no name to judge (it was given by ID, or its names are gone); the default is deny"
)

// DecideImage judges one image by all the names the runtime holds for it.
// names are its tags (repo:tag), digest references (repo@sha256:...) and,
// on containerd, records named by image ID; digest is the content's
// manifest (or index) digest when the runtime knows it, else empty.
//
//   - A tag is judged with the content's digest attached (repo:tag@digest),
//     so that digest-pinned rules apply to what was actually fetched: the
//     given digest, and every digest its repository has among the names
//     (Docker lists where a tag was pulled from as repo@digest). A tag is
//     allowed only if it is allowed with each of them; one with no digest
//     anywhere (built or tagged locally) is judged alone.
//   - A digest reference is judged on its own, except that it follows a
//     tag of its repository that is allowed (it records where that tag was
//     pulled from, and a rule with tags: cannot match it alone). One whose
//     digest differs from the given digest is denied: which content it
//     names is unclear.
//   - An image ID is not a name: it says nothing about where the image
//     came from and follows the image's verdict.
//   - The image may stay and run when at least one name is allowed. An
//     image with no name is decided by the policy's default.
//   - Expiry is judged as of now for every name.
func (p *Policy) DecideImage(names []string, digest string, now time.Time) ImageDecision {
	return p.DecideImageWith(names, digest, now, nil)
}

// SignatureSource answers, for a signed-by rule that matches a name, whether
// the name's manifest digest carries a valid signature (in the name's
// repository) by one of the rule's keys. The caller fills it in
// (enforcer/signature asks the registry); the core only asks.
type SignatureSource interface {
	Signature(ref Ref, keys *KeySet) SignatureResult
}

// reasonNoDigest is the evidence for a name with no manifest digest: a
// loaded, built or locally tagged image, which no registry signature can
// cover. It is a definite answer, not an unreachable registry.
const reasonNoDigest = "the image has no repository digest (it was loaded, built or tagged locally), so no registry signature can cover it"

// DecideImageWith is DecideImage with sigs answering for the signed-by
// rules that match a name. A name those rules match with no digest is
// denied as unsigned. With nil sigs, such rules deny (fail closed) with the
// decision's NeedsEvidence set, as in DecideImage.
func (p *Policy) DecideImageWith(names []string, digest string, now time.Time, sigs SignatureSource) ImageDecision {
	out := ImageDecision{PolicyHash: p.Hash, Names: make([]NameDecision, len(names))}
	refs := make([]Ref, len(names))
	errs := make([]error, len(names))
	// The digests each repository has among the names.
	var digests map[string][]string
	for i, n := range names {
		refs[i], errs[i] = p.cache.parse(n)
		if errs[i] == nil && refs[i].Tag == "" && refs[i].Digest != "" {
			if digests == nil {
				digests = map[string][]string{}
			}
			digests[refs[i].Name] = appendNew(digests[refs[i].Name], refs[i].Digest)
		}
	}
	allowedTag := map[string]bool{} // repositories with an allowed tag
	for i, n := range names {
		nd := &out.Names[i]
		nd.Name = n
		r, err := refs[i], errs[i]
		switch {
		case errors.Is(err, ErrImageID):
			nd.ImageID = true
			continue
		case err != nil:
			nd.Decision = Decision{Input: n, Reason: "invalid reference: " + err.Error(), PolicyHash: p.Hash}
			continue
		case r.Digest != "" && digest != "" && r.Digest != digest:
			nd.Decision = Decision{Input: n, Reference: r.String, PolicyHash: p.Hash,
				Reason: fmt.Sprintf("the reference pins %s but the image's content is %s", r.Digest, digest)}
			continue
		case r.Digest != "":
			nd.Decision = p.decideAs(n, r, now, sigs)
			continue
		}
		// A tag: judged with every digest its content is known by.
		ds := digests[r.Name]
		if digest != "" {
			ds = appendNew(append([]string(nil), ds...), digest)
		}
		if len(ds) == 0 {
			nd.Decision = p.decideAs(n, r, now, sigs)
		}
		for _, d := range ds {
			pinned := r
			pinned.Digest, pinned.String = d, r.String+"@"+d
			dec := p.decideAs(n, pinned, now, sigs)
			if nd.Decision.Input == "" || !dec.Allowed {
				nd.Decision = dec
			}
			if !dec.Allowed {
				break
			}
		}
		if nd.Decision.Allowed {
			allowedTag[r.Name] = true
		}
	}
	// Digest references follow an allowed tag of their repository.
	for i := range out.Names {
		nd := &out.Names[i]
		if errs[i] == nil && refs[i].Tag == "" && !nd.Decision.Allowed && allowedTag[refs[i].Name] &&
			(digest == "" || refs[i].Digest == digest) {
			nd.Follows = true
			nd.Decision.Allowed = true
			nd.Decision.Rule, nd.Decision.Resembles = nil, ""
			nd.Decision.Reason = "follows the allowed tag of " + refs[i].Name + " on the same image"
		}
	}
	p.requireProvenance(&out, refs, errs)
	var firstDenied *Decision
	for i := range out.Names {
		nd := &out.Names[i]
		if nd.ImageID {
			continue
		}
		if nd.Decision.Allowed {
			out.Allowed, out.Decision = true, nd.Decision
			return out
		}
		if firstDenied == nil {
			firstDenied = &nd.Decision
		}
	}
	if firstDenied != nil {
		out.Decision = *firstDenied
		return out
	}
	input := digest
	for _, n := range out.Names { // only image IDs, if anything
		input = n.Name
		break
	}
	out.Allowed = p.Default == DefaultAllow
	out.Decision = Decision{Input: input, Allowed: out.Allowed, Reason: reasonNoNameDeny, PolicyHash: p.Hash}
	switch {
	case out.Allowed && p.LocalImages == LocalImagesDeny:
		// Pulled content keeps a digest name; without one it was made here.
		out.Allowed, out.Decision.Allowed, out.Decision.Reason = false, false, reasonLocalNoName
	case out.Allowed:
		out.Decision.Reason = reasonNoNameAllow
	}
	return out
}

// decideAs is DecideRef with the caller's spelling as the input and, when
// sigs is set, the signature and attestation evidence the decision asks
// for (attestations when sigs is an AttestationSource too).
func (p *Policy) decideAs(input string, r Ref, now time.Time, sigs SignatureSource) Decision {
	d := p.DecideRef(r, now)
	if sigs == nil || d.NeedsEvidence() == nil && d.NeedsAttestations() == nil {
		d.Input = input
		return d
	}
	ev := &Evidence{Digest: r.Digest, Results: map[string]SignatureResult{}}
	atts, _ := sigs.(AttestationSource) // nil: attestation rules deny, fail closed
	// Each round answers one key set or one rule's attestations; a rule
	// has at most one of each.
	for range 2 * len(p.Allow) {
		if ks := d.NeedsEvidence(); ks != nil {
			if r.Digest == "" {
				ev.Results[ks.ID] = SignatureResult{Status: SignatureMissing, Reason: reasonNoDigest}
			} else {
				ev.Results[ks.ID] = sigs.Signature(r, ks)
			}
		} else if atts == nil || !ev.AnswerAttestations(d, func(q *AttestationRequirement) AttestationResult {
			if r.Digest == "" {
				return AttestationResult{Status: AttestationMissing, Reason: reasonNoDigest}
			}
			return atts.Attestations(r, q)
		}) {
			break
		}
		d = p.DecideEvidence(r, now, ev)
	}
	d.Input = input
	return d
}

// Unverifiable returns the first name denied only for want of a definite
// signature answer (a registry that could not be reached), or nil. A
// guard acts on no name of such an image: it reports the failure and asks
// again later, since an unreachable registry proves nothing.
func (d ImageDecision) Unverifiable() *NameDecision {
	for i, n := range d.Names {
		if n.Decision.Unverifiable() {
			return &d.Names[i]
		}
	}
	return nil
}

// Unverifiable reports whether the decision denies only for want of a
// definite signature or attestation answer.
func (d Decision) Unverifiable() bool {
	return !d.Allowed && (d.Signature != nil && d.Signature.Result.Status == SignatureUnverifiable ||
		d.Attestation != nil && d.Attestation.Status == AttestationUnverifiable)
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// ParseRef is the package's ParseRef through the policy's cache of parsed references:
// the guards parse the same names again and again (every pass over an
// image, every reconcile), and the grammar's parser costs microseconds.
func (p *Policy) ParseRef(s string) (Ref, error) { return p.cache.parse(s) }

// DeniedWhateverContent decides name alone and reports whether the policy
// denies it whatever content it names and whatever other names its image
// has, so that a guard may remove it without looking at the image first:
// no allow rule pins digests (content could otherwise allow what the name
// does not), no signature is in question, and the repository's digest
// references are denied too (Docker drops them with the repository's last
// tag, and an allowed one would make the removal take an allowed name
// along). An image ID, or a name the policy cannot parse, is never denied
// whatever its content.
func (p *Policy) DeniedWhateverContent(name string, now time.Time) (Decision, bool) {
	d := p.Decide(name, now)
	if d.Allowed || d.Signature != nil || d.Attestation != nil || d.Reference == "" || p.pinsDigests {
		return d, false
	}
	r, err := p.ParseRef(name)
	if err != nil {
		return d, false
	}
	// Where no allow rule pins digests, every digest reference of a
	// repository is decided alike, but by deny rules that list digests,
	// which only deny more: one digest stands for all.
	digests := p.Decide(r.Name+"@"+anyDigest, now)
	return d, !digests.Allowed && digests.Signature == nil && digests.Attestation == nil
}

// anyDigest stands for every digest in DeniedWhateverContent.
var anyDigest = "sha256:" + strings.Repeat("0", 64)
