package docker

import (
	"context"
	"errors"
	"time"

	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/policy"
)

// Provenance on dockerd's containerd image store (Docker 29's default), under
// local-images: deny. dockerd's own image store records a repository digest
// only for a repository it pulled the content from or pushed it to, so there
// an allowed repository digest is proof (policy/provenance.go). The
// containerd image store shows every image record's name with the record's
// target as a repository digest, loaded, built and pulled content alike, so
// there none is: the core verdict (policy.Judge) sets them aside and asks
// the registry whether an allowed repository serves the image's content,
// as for a containerd record. A registry that cannot be reached (or a
// pullguard without network) proves nothing either way: the names are
// kept, reported failed, and judged again at the next reconcile.

// WithEvidence has the guard ask j what names cannot prove about content
// (signatures, and where content on dockerd's containerd image store came
// from), shared with the containerd guard and the authorization plugin.
// Without it signed-by rules deny every image they name, and on the
// containerd image store allowed names are undecided under local-images:
// deny.
func WithEvidence(j *evidence.Judge) Option { return func(g *Guard) { g.judge = j } }

// vouched is an image with the names its provenance lets it be judged by.
type vouched struct {
	Image
	// unknown, when set, says why no registry could say whether it serves
	// the content: a name the policy allows is then neither proven nor
	// disproven, and is kept and reported failed.
	unknown error
}

// vouch returns the image to judge for img: img itself on dockerd's own
// image store, or when the policy judges names alone; on the containerd
// image store under local-images: deny, its names with the repository
// digests dockerd made up replaced by the one the verdict found an allowed
// registry to serve.
func vouch(ps *evidence.Pass, p *policy.Policy, now time.Time, img Image) vouched {
	if !img.InContainerd || p.LocalImages != policy.LocalImagesDeny {
		return vouched{Image: img}
	}
	v := ps.Judge(p, policy.Image{Names: imageNames(p, img), Digest: img.ID}, now)
	out := vouched{Image: Image{ID: img.ID, InContainerd: true}}
	if v.Outcome == policy.Undecided && !errors.Is(v.Err, policy.ErrSignatureUnanswered) {
		out.unknown = v.Err
	}
	for _, n := range v.Names {
		switch r, err := p.ParseRef(n.Name); {
		case n.SetAside:
		case err == nil && r.Tag == "" && r.Digest != "":
			out.RepoDigests = append(out.RepoDigests, n.Name) // denied whatever its content: it goes
		default:
			out.RepoTags = append(out.RepoTags, n.Name)
		}
	}
	if v.VouchedBy != "" {
		out.RepoDigests = append(out.RepoDigests, v.VouchedBy)
	}
	return out
}

// judge is the policy to plan with: while provenance is unknown, names
// alone, so that nothing is removed for want of an answer.
func (v vouched) judge(p *policy.Policy) *policy.Policy {
	if v.unknown != nil {
		return p.NamesOnly()
	}
	return p
}

// plan plans the image (planImage) with what its provenance allows, and
// lists the names whose provenance is unknown (of only, when set).
func (v vouched) plan(p *policy.Policy, now time.Time, only []string, sigs policy.SignatureSource) imagePlan {
	plan := planImage(v.Image, v.judge(p), now, only, sigs)
	if v.unknown == nil || plan.Unverifiable != nil {
		return plan
	}
	onlyNorm := map[string]bool{}
	for _, o := range only {
		onlyNorm[normalize(o)] = true
	}
	for _, n := range p.DecideImageWith(imageNames(p, v.Image), "", now, sigs).Names {
		if n.Unproven && (only == nil || onlyNorm[normalize(n.Name)]) {
			plan.Unknown = append(plan.Unknown, n)
		}
	}
	plan.UnknownErr = evidence.Failure(policy.Verdict{Err: v.unknown})
	return plan
}

// judgeVouched judges a container by its image as vouched for (nil: gone).
func judgeVouched(typed, imageID string, v *vouched, p *policy.Policy, now time.Time, sigs policy.SignatureSource) verdict {
	if v == nil {
		return judgeContainer(typed, imageID, nil, p, now, sigs)
	}
	return judgeContainer(typed, imageID, &v.Image, v.judge(p), now, sigs)
}

// vouchFor vouches for images under p, for one pass.
func vouchFor(ps *evidence.Pass, p *policy.Policy, now time.Time) vouchFunc {
	return func(_ context.Context, img Image) vouched { return vouch(ps, p, now, img) }
}

// vouchFunc vouches for one image (vouch, with the pass's policy).
type vouchFunc func(ctx context.Context, img Image) vouched
