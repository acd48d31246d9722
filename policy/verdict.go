package policy

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// This file is the one entry point every path asks "may this image stay and
// run?" through (the guards, the authorization plugin, the image verifier,
// scan): Judge. Its answer has three outcomes. Allowed and Denied are the
// policy's; Undecided means that an answer the policy needed could not be
// had (a registry that does not answer, a pullguard without network), and
// an undecided image is neither removed nor admitted.
//
// What a name cannot prove about content, Judge asks an EvidenceSource, only
// when a rule needs it: a signature when a signed-by rule matches a name,
// whether a repository serves the content when local-images: deny asks
// where content came from and the image's names do not say. The core
// decides which repositories to ask; callers only translate their
// runtime's image into an Image and answer the questions.

// Image is an image as any runtime holds it, in the core's terms.
type Image struct {
	// Names are every name the runtime holds for the content: tags,
	// digest names (repo@sha256:…) and, on containerd, records named by
	// image ID.
	Names []string
	// Digest is the content's manifest (or index) digest when the runtime
	// knows it, else empty (dockerd's own store, whose image ID is the
	// config digest).
	Digest string
	// DigestNamesProveOrigin says whether a digest name the runtime holds
	// can only have come from a pull or push of that repository: true for
	// dockerd's own image store; false for containerd's records (`ctr
	// images tag` writes any name) and Docker 29's containerd image store
	// (which shows every name with the record's digest). Where false, the
	// allowed digest names are set aside and the EvidenceSource is asked instead.
	DigestNamesProveOrigin bool
	// Pulling says that the names are being pulled right now from their
	// repositories (the containerd image verifier, asked during a pull):
	// the pull is the content's origin, so names alone are judged and
	// nobody is asked where it came from.
	Pulling bool
}

// EvidenceSource answers what a name cannot prove about content. Judge asks
// it only when a rule needs the answer, and never when names alone settle the
// verdict. Implementations bind their own context and deadline (one pass
// of a guard, one request) and may cache; the core keeps nothing.
//
// Later kinds of requirement (keyless identities) add a method each.
type EvidenceSource interface {
	// Signature verifies ref's manifest digest (in ref's repository, or
	// keys.Repository) against keys. SignatureUnverifiable means no answer
	// could be had; the image is then undecided.
	Signature(ref Ref, keys *KeySet) SignatureResult
	// Attestations returns the statements of want.Type whose subject is
	// ref's manifest digest, each verified by one of want.SignedBy; asked
	// only when a rule with attestations matches a name, once per Judge.
	// The core picks the newest and evaluates the condition.
	// AttestationUnverifiable makes the image undecided.
	Attestations(ref Ref, want *AttestationRequirement) AttestationResult
	// Serves reports whether repository serves the manifest digest. An
	// error means no answer could be had.
	Serves(repository, digest string) (bool, error)
}

// KnownOrigins is implemented by an EvidenceSource that remembers which
// repositories once served a digest (enforcer/evidence): they are asked
// first, since content keeps coming from where it came from whatever it
// is called now (a pulled image re-tagged, the pulled tag since moved).
type KnownOrigins interface {
	Origins(digest string) []string
}

// Outcome is a verdict's outcome. The zero value is Undecided: a verdict
// nobody filled in removes nothing and admits nothing.
type Outcome uint8

const (
	// Undecided: an answer the policy needed could not be had. Nothing is
	// removed, nothing admitted; the caller reports a failure and asks
	// again later.
	Undecided Outcome = iota
	// Allowed: the image may stay and run.
	Allowed
	// Denied: the policy does not allow it.
	Denied
)

func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allowed"
	case Denied:
		return "denied"
	}
	return "undecided"
}

// NameVerdict is the verdict on one of an image's names.
type NameVerdict struct {
	NameDecision
	// Outcome is the name's own: a name is undecided when the answer its
	// allowing rule needs could not be had. An image-ID name has the
	// image's outcome.
	Outcome Outcome
	// SetAside is set for a digest name that proves nothing where the
	// image is kept (Image.DigestNamesProveOrigin false): it is allowed
	// only once an allowed repository is found to serve the content.
	SetAside bool
}

// Verdict is the one answer about an image.
type Verdict struct {
	Outcome Outcome
	// Decision explains the outcome: the allowed name's decision, the
	// first undecided or the first denied name's.
	Decision Decision
	// Names are the verdicts on Image.Names, in the order given.
	Names []NameVerdict
	// Err says why the verdict is undecided; nil otherwise.
	Err error
	// VouchedBy is the allowed digest name (repo@sha256:…) that shows the
	// content came from an allowed repository, or empty.
	VouchedBy string
	// PolicyHash is the content hash of the policy that decided.
	PolicyHash string
}

// ErrUndecided is what every undecided verdict's error wraps.
var ErrUndecided = errors.New("the policy could not decide")

// UndecidedError is an undecided verdict as an error: neither a denial nor
// an allowance. errors.Is(err, ErrUndecided) holds, and Unwrap gives the
// reason the answer could not be had.
type UndecidedError struct {
	Decision Decision
	Err      error
}

func (e *UndecidedError) Error() string {
	ref := e.Decision.Reference
	if ref == "" {
		ref = e.Decision.Input
	}
	return fmt.Sprintf("%s: %s: %v", ref, ErrUndecided, e.Err)
}

func (e *UndecidedError) Unwrap() []error { return []error{ErrUndecided, e.Err} }

// AsError is nil for an allowed verdict, a *DeniedError for a denied one
// and an *UndecidedError for one that could not be decided: what callers
// that refuse something (the plugin, the image verifier) return.
func (v Verdict) AsError() error {
	switch v.Outcome {
	case Allowed:
		return nil
	case Denied:
		return &DeniedError{Decision: v.Decision}
	}
	return &UndecidedError{Decision: v.Decision, Err: v.Err}
}

// Denied lists the names the policy definitely does not allow: the names
// to remove. Image-ID names follow the image and are not among them.
func (v Verdict) Denied() []NameVerdict {
	var out []NameVerdict
	for _, n := range v.Names {
		if !n.ImageID && n.Outcome == Denied {
			out = append(out, n)
		}
	}
	return out
}

// Judge decides img as of now, asking ev what the names cannot prove. A
// nil ev answers nothing: signed-by rules then deny (fail closed: no
// verifier is a configuration, not an outage) and provenance questions are
// undecided.
func (p *Policy) Judge(img Image, now time.Time, ev EvidenceSource) Verdict {
	var sigs SignatureSource // nil: signed-by rules deny, fail closed
	if ev != nil {
		sigs = &askedOnce{ev: ev}
	}
	if img.Pulling {
		q := p.namesOnly()
		d := q.DecideImageWith(img.Names, img.Digest, now, sigs)
		return q.verdict(img, d, nil, unanswered(d), nil)
	}
	names := img.Names
	// Digest names that prove nothing are set aside, and evidence asked
	// about their repositories instead; also where the runtime does not
	// say which content they name (the digest in a name is its writer's).
	var asideAt []int
	if p.LocalImages == LocalImagesDeny && !img.DigestNamesProveOrigin {
		names, asideAt = p.setAside(img.Names, now)
	}
	d := p.DecideImageWith(names, img.Digest, now, sigs)
	sigErr, provErr := unanswered(d), error(nil)
	if p.LocalImages == LocalImagesDeny && !img.DigestNamesProveOrigin &&
		(slices.ContainsFunc(d.Names, isUnproven) || asideAt != nil && !d.Allowed) {
		var served string
		if img.Digest == "" {
			provErr = errNoContent
		} else {
			served, provErr = p.askOrigin(img, names, d, asideAt, now, ev, sigs)
		}
		if served != "" {
			// Judged as one more digest name of the content, as a
			// repository digest dockerd or CRI recorded would be; the
			// verdict is still on the image's own names.
			d = p.DecideImageWith(append(slices.Clip(names), served), img.Digest, now, sigs)
			d.Names = d.Names[:len(names)]
		}
	}
	return p.verdict(img, d, asideAt, sigErr, provErr)
}

// ErrSignatureUnanswered is what the error of a verdict undecided for want
// of a signature answer wraps.
var ErrSignatureUnanswered = errors.New("the signature could not be verified")

func isUnproven(n NameDecision) bool { return n.Unproven }

// ErrAttestationUnanswered is what the error of a verdict undecided for
// want of an attestation answer wraps.
var ErrAttestationUnanswered = errors.New("the attestations could not be verified")

// unanswered is the error of a decision that lacks a signature or
// attestation answer.
func unanswered(d ImageDecision) error {
	u := d.Unverifiable()
	switch {
	case u == nil:
		return nil
	case u.Decision.Signature != nil && u.Decision.Signature.Result.Status == SignatureUnverifiable:
		return fmt.Errorf("%w: %s", ErrSignatureUnanswered, u.Decision.Signature.Result.Reason)
	}
	return fmt.Errorf("%w: %s", ErrAttestationUnanswered, u.Decision.Attestation.Reason)
}

// mayAllow reports whether a name's decision allows it, or would with a
// signature or attestations: only a name denied whatever the evidence is
// judged on its own.
func mayAllow(d Decision) bool { return d.Allowed || d.Signature != nil || d.Attestation != nil }

// setAside returns names without the digest names the policy allows on
// their own (or would, signed), and where each name of all went in the
// result (-1: set aside).
func (p *Policy) setAside(all []string, now time.Time) ([]string, []int) {
	var kept []string
	var at []int
	for i, n := range all {
		if r, err := p.cache.parse(n); err == nil && r.Tag == "" && r.Digest != "" && mayAllow(p.DecideRef(r, now)) {
			if at == nil {
				at = make([]int, len(all))
				for j := range i {
					at[j] = j
				}
				kept = slices.Clone(all[:i])
			}
			at[i] = -1
			continue
		}
		if at != nil {
			at[i] = len(kept)
			kept = append(kept, n)
		}
	}
	if at == nil {
		return all, nil
	}
	return kept, at
}

// askOrigin finds an allowed repository that serves the content, for an
// image with allowed names its own names do not vouch for. It asks, until
// one says yes: the repositories known to have served it that the policy
// allows, then the repositories of its allowed unproven names and
// of its set-aside digest names. It returns the repo@digest name to judge
// the content by, or the error that left a question unanswered.
func (p *Policy) askOrigin(img Image, names []string, d ImageDecision, asideAt []int, now time.Time, ev EvidenceSource, sigs SignatureSource) (string, error) {
	digest := img.Digest
	var repos []string
	if k, ok := ev.(KnownOrigins); ok {
		for _, repo := range k.Origins(digest) {
			if p.DecideImageWith([]string{repo + "@" + digest}, digest, now, sigs).Allowed {
				repos = appendNew(repos, repo)
			}
		}
	}
	for i, n := range d.Names {
		if n.Unproven {
			if r, err := p.cache.parse(names[i]); err == nil {
				repos = appendNew(repos, r.Name)
			}
		}
	}
	for i, at := range asideAt {
		if at < 0 {
			if r, err := p.cache.parse(img.Names[i]); err == nil && r.Digest == digest {
				repos = appendNew(repos, r.Name)
			}
		}
	}
	if ev == nil {
		return "", errNoEvidence
	}
	var unanswered error
	for _, repo := range repos {
		served, err := ev.Serves(repo, digest)
		if err != nil {
			if unanswered == nil {
				unanswered = fmt.Errorf("whether %s serves %s is unknown: %w", repo, digest, err)
			}
			continue
		}
		if served {
			return repo + "@" + digest, nil // it came from there, whatever the others say
		}
	}
	return "", unanswered
}

var errNoEvidence = errors.New("no registry to ask")

// errNoContent: the runtime names no content (a container whose image
// record is gone), so nobody can be asked where it came from.
var errNoContent = errors.New("the runtime does not say which content the name stands for")

// verdict turns the names' decisions into the verdict on img: allowed
// when one of its names is, else undecided when one of them lacks an
// answer, else denied. An image with no name but image IDs is decided by
// the policy's default (DecideImageWith).
func (p *Policy) verdict(img Image, d ImageDecision, asideAt []int, sigErr, provErr error) Verdict {
	v := Verdict{Names: make([]NameVerdict, len(img.Names)), VouchedBy: d.VouchedBy, PolicyHash: p.Hash}
	first := map[Outcome]int{Allowed: -1, Undecided: -1, Denied: -1}
	for i := range v.Names {
		j := i
		if asideAt != nil {
			j = asideAt[i]
		}
		nv := &v.Names[i]
		if j < 0 {
			nv.NameDecision, nv.SetAside = p.asideDecision(img.Names[i], d, provErr), true
		} else {
			nv.NameDecision = d.Names[j]
		}
		if nv.ImageID {
			continue
		}
		switch {
		case nv.Decision.Allowed:
			nv.Outcome = Allowed
		case provErr != nil && nv.Unproven || sigErr != nil && nv.Decision.Unverifiable():
			nv.Outcome = Undecided
		default:
			nv.Outcome = Denied
		}
		if first[nv.Outcome] < 0 {
			first[nv.Outcome] = i
		}
	}
	switch {
	case first[Allowed] >= 0:
		v.Outcome, v.Decision = Allowed, v.Names[first[Allowed]].Decision
	case first[Undecided] >= 0:
		n := v.Names[first[Undecided]]
		v.Outcome, v.Decision, v.Err = Undecided, n.Decision, sigErr
		if n.Unproven && provErr != nil {
			v.Err = provErr
		}
	case first[Denied] >= 0:
		v.Outcome, v.Decision = Denied, v.Names[first[Denied]].Decision
	case d.Allowed:
		v.Outcome, v.Decision = Allowed, d.Decision
	default:
		v.Outcome, v.Decision = Denied, d.Decision
	}
	for i := range v.Names {
		if v.Names[i].ImageID {
			v.Names[i].Outcome = v.Outcome
		}
	}
	return v
}

// asideDecision is the decision on a set-aside digest name, which proves
// nothing either way: allowed when an allowed repository was found to
// serve the content, denied for want of provenance otherwise.
func (p *Policy) asideDecision(name string, d ImageDecision, provErr error) NameDecision {
	r, _ := p.cache.parse(name)
	nd := NameDecision{Name: name, Decision: Decision{Input: name, Reference: r.String, PolicyHash: p.Hash}}
	switch {
	case d.VouchedBy != "":
		nd.Decision.Allowed, nd.Decision.Reason = true, "its content came from "+d.VouchedBy
	case provErr != nil:
		nd.Unproven, nd.Decision.Reason = true, "whether its content came from an allowed repository is unknown"
	default:
		nd.Unproven, nd.Decision.Reason = true, ReasonLocalContent
	}
	return nd
}

// askedOnce asks ev about each (repository, digest, key set) and each
// (repository, digest, attestation requirement) once per Judge, however
// many names and rounds need the answer.
type askedOnce struct {
	ev      EvidenceSource
	answers map[[3]string]SignatureResult
	attests map[[3]string]AttestationResult
}

func (a *askedOnce) Attestations(ref Ref, want *AttestationRequirement) AttestationResult {
	return once(&a.attests, [3]string{ref.Name, ref.Digest, want.ID}, func() AttestationResult { return a.ev.Attestations(ref, want) })
}

func (a *askedOnce) Signature(ref Ref, keys *KeySet) SignatureResult {
	return once(&a.answers, [3]string{ref.Name, ref.Digest, keys.ID}, func() SignatureResult { return a.ev.Signature(ref, keys) })
}

// once returns the answer kept under k, or asks and keeps it.
func once[V any](answers *map[[3]string]V, k [3]string, ask func() V) V {
	if res, ok := (*answers)[k]; ok {
		return res
	}
	res := ask()
	if *answers == nil {
		*answers = map[[3]string]V{}
	}
	(*answers)[k] = res
	return res
}
