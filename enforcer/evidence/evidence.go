// Package evidence is where the policy core's questions about content meet
// the registry: it answers policy.EvidenceSource with the signature
// verifier (enforcer/signature) and the provenance cache
// (enforcer/provenance), for every guard, the authorization plugin and
// scan alike, and turns the core's three outcomes into what a guard does:
// an allowed name is kept, a denied one removed, an undecided one kept and
// reported failed.
//
// A verdict reached on verified evidence (a repository that serves the
// content, a valid signature) is kept with the evidence, keyed on the
// policy's hash and the content's digest: asking again would only get the
// same answer. Nothing else is kept here: a verdict reached on a negative
// answer, and an undecided one, are judged again each time (the answers
// themselves are cached, briefly, where they are asked).
package evidence

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

// Origins answers whether a repository serves a digest, and remembers
// which ones did (provenance.Cache).
type Origins interface {
	Served(ctx context.Context, repository, digest string) (bool, error)
	Origins(digest string) []string
}

var _ Origins = (*provenance.Cache)(nil)

// ErrNoRegistry is the answer to a provenance question where no registry
// is asked (a scan or test without one): the image is undecided.
var ErrNoRegistry = errors.New("no registry is asked here")

// Judge answers the core's questions for one process. It is safe for
// concurrent use.
type Judge struct {
	sigs    enforcer.Signatures // nil: signed-by rules deny (fail closed)
	origins Origins             // nil: provenance questions are undecided
	log     logrus.FieldLogger
	// noNetwork is logged once: the process may not open network sockets
	// at all (the shipped unit's RestrictAddressFamilies=AF_UNIX).
	noNetwork sync.Once
	verdicts  verdictCache
	undecided undecidedSince // undecided.go
}

// New returns a judge over the verifier and the provenance cache; either
// may be nil.
func New(sigs enforcer.Signatures, origins Origins, log logrus.FieldLogger) *Judge {
	j := &Judge{sigs: sigs, origins: origins, log: log}
	if c, ok := origins.(*provenance.Cache); ok && c == nil {
		j.origins = nil // a nil cache is no registry either
	}
	return j
}

// Pass is the evidence for one pass of a guard (a reconcile, one event,
// one request): it asks within ctx, and a question the registry failed to
// answer is not asked again in the same pass.
type Pass struct {
	j    *Judge
	ctx  context.Context
	sigs policy.SignatureSource
}

// Pass starts a pass within ctx. A nil judge answers nothing: signed-by
// rules deny and provenance is undecided.
func (j *Judge) Pass(ctx context.Context) *Pass {
	if j == nil {
		return &Pass{ctx: ctx}
	}
	return &Pass{j: j, ctx: provenance.WithPass(ctx), sigs: enforcer.SourceFor(ctx, j.sigs)}
}

// Signatures is the pass's signature verifier as the policy core's
// signature source, or nil without one (signed-by rules then deny).
func (ps *Pass) Signatures() policy.SignatureSource { return ps.sigs }

// Judge decides img under p as of now (policy.Policy.Judge), from the
// verdict cache when verified evidence decided it before. Provenance
// undecided for longer than the grace is not vouched for (undecided.go).
func (ps *Pass) Judge(p *policy.Policy, img policy.Image, now time.Time) policy.Verdict {
	if ps.j == nil {
		return p.Judge(img, now, answers{ps, &asked{}})
	}
	if v, ok := ps.j.verdicts.get(p, img, now); ok {
		return v
	}
	a := &asked{}
	rec := &recorder{answers: answers{ps, a}}
	v := p.Judge(img, now, rec)
	if a.any && a.verified && v.Outcome != policy.Undecided {
		ttl := verdictTTL
		if a.attested {
			ttl = attestedVerdictTTL
		}
		ps.j.verdicts.put(p, img, now, v, ttl, rec.evidence())
	}
	return ps.j.bound(img, v, now)
}

// attestedVerdictTTL is how long a verdict resting on attestations is
// kept: less than a resync (5 minutes), so that every resync evaluates the
// conditions again, a freshness condition at the time of the resync,
// from the verified statements the verifier keeps.
const attestedVerdictTTL = time.Minute

// answers is a pass as the core's EvidenceSource for one Judge, noting
// whether every answer was a verified yes.
type answers struct {
	*Pass
	a *asked
}

type asked struct{ any, verified, attested bool }

func (a *asked) note(yes bool) {
	a.verified = yes && (a.verified || !a.any)
	a.any = true
}

var _ policy.KnownOrigins = answers{}

func (e answers) Signature(ref policy.Ref, keys *policy.KeySet) policy.SignatureResult {
	if e.sigs == nil {
		e.a.note(false)
		return policy.SignatureResult{} // not checked: the rule denies
	}
	res := e.sigs.Signature(ref, keys)
	e.a.note(res.Status == policy.SignatureVerified)
	return res
}

// Attestations asks the pass's verifier; without one, attestation rules
// deny (fail closed), as signed-by rules do.
func (e answers) Attestations(ref policy.Ref, want *policy.AttestationRequirement) policy.AttestationResult {
	e.a.attested = true
	as, _ := e.sigs.(policy.AttestationSource)
	if as == nil {
		e.a.note(false)
		return policy.AttestationResult{}
	}
	res := as.Attestations(ref, want)
	e.a.note(res.Status == policy.AttestationVerified)
	return res
}

func (e answers) Serves(repository, digest string) (bool, error) {
	if e.j == nil || e.j.origins == nil {
		e.a.note(false)
		return false, ErrNoRegistry
	}
	served, err := e.j.origins.Served(e.ctx, repository, digest)
	e.a.note(err == nil && served)
	if err != nil && provenance.NoNetwork(err) {
		e.j.noNetwork.Do(func() {
			e.j.log.WithError(err).Warn("cannot ask registries whether they serve an image's content (no network for pullguard); " +
				"under local-images: deny, images with allowed names are then kept and reported failed wherever the runtime's records " +
				"cannot prove where they came from (containerd, dockerd's containerd image store), and the authorization plugin " +
				"refuses to run or tag them: allow pullguard the network (pullguard(8), NETWORK)")
		})
	}
	return served, err
}

func (e answers) Origins(digest string) []string {
	if e.j == nil || e.j.origins == nil {
		return nil
	}
	return e.j.origins.Origins(digest)
}

// What a guard does about one name of a judged image.
type Act uint8

const (
	// Keep: the name is allowed.
	Keep Act = iota
	// Remove: the policy denies the name.
	Remove
	// Fail: the policy could not decide; the name is kept, the failure
	// reported, and the next resync judges it again.
	Fail
)

// ActOn is what to do about the name v.Names[i].
func ActOn(v policy.Verdict, i int) Act {
	switch v.Names[i].Outcome {
	case policy.Allowed:
		return Keep
	case policy.Denied:
		return Remove
	}
	return Fail
}

// Running is the verdict on content a container runs or is about to: content
// whose provenance could not be established is not run (it would be
// refused before the fact), so a name undecided for want of provenance is
// denied for it. One undecided for want of a signature answer stays
// undecided, and so does everything while pullguard has no network.
func Running(v policy.Verdict) policy.Verdict {
	if v.Outcome != policy.Undecided || v.Err == nil || provenance.NoNetwork(v.Err) {
		return v // no network at all is a configuration, warned about once
	}
	return v.NotVouchedFor(fmt.Sprintf("its origin could not be established, and such content is not run: %v", v.Err))
}

// Failure is the error a failed record carries for an undecided verdict:
// why no answer could be had, and that nothing was removed for it. One
// undecided for want of a signature answer is also
// enforcer.ErrSignatureUnverifiable.
func Failure(v policy.Verdict) error {
	if v.Err == nil {
		return nil
	}
	f := failure{err: v.Err}
	if errors.Is(v.Err, policy.ErrSignatureUnanswered) {
		f.kind = enforcer.ErrSignatureUnverifiable
	}
	return f
}

type failure struct{ err, kind error }

func (f failure) Error() string {
	return f.err.Error() + "; nothing removed, asked again at the next resync"
}

func (f failure) Unwrap() []error {
	if f.kind == nil {
		return []error{f.err}
	}
	return []error{f.err, f.kind}
}
