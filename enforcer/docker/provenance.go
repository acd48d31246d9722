package docker

import (
	"context"
	"time"

	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

// Provenance on dockerd's containerd image store (Docker 29's default), under
// local-images: deny. dockerd's own image store records a repository digest
// only for a repository it pulled the content from or pushed it to, so there
// an allowed repository digest is proof (policy/provenance.go). The
// containerd image store shows every image record's name with the record's
// target as a repository digest, loaded, built and pulled content alike, so
// there none is: the guard sets them aside and asks the registry whether
// each allowed repository serves the image's content, as the containerd
// guard does (enforcer/provenance). A registry that cannot be reached (or a
// pullguard without network) proves nothing either way: the names are kept,
// reported failed, and judged again at the next reconcile.

// WithProvenance has the guard judge provenance on dockerd's containerd
// image store by asking registries through c (shared with the containerd
// guard and the authorization plugin). Without it, repository digests are
// taken as dockerd shows them there too, which proves nothing (checkImageStore
// warns).
func WithProvenance(c *provenance.Cache) Option { return func(g *Guard) { g.prov = c } }

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
// digests dockerd made up replaced by those the registries confirm
// (provenance.DockerNames).
func vouch(ctx context.Context, prov *provenance.Cache, p *policy.Policy, now time.Time, img Image, sigs policy.SignatureSource) vouched {
	if !img.InContainerd || prov == nil || p.LocalImages != policy.LocalImagesDeny {
		return vouched{Image: img}
	}
	judged, ev := prov.DockerNames(ctx, p, now, img.ID, imageNames(p, img), sigs)
	v := vouched{Image: Image{ID: img.ID, InContainerd: true}, unknown: ev.Unknown}
	for _, n := range judged {
		if r, err := p.ParseRef(n); err == nil && r.Tag == "" && r.Digest != "" {
			v.RepoDigests = append(v.RepoDigests, n)
		} else {
			v.RepoTags = append(v.RepoTags, n)
		}
	}
	return v
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
	plan.UnknownErr = v.unknown
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
func (g *Guard) vouchFor(p *policy.Policy, sigs policy.SignatureSource) vouchFunc {
	return func(ctx context.Context, img Image) vouched { return g.vouch(ctx, p, img, sigs) }
}

// vouch vouches for img (the function vouch) in the guard's passes and events. A pullguard that may
// not use the network at all (the shipped unit without its NETWORK drop-in)
// is told once, with what that means, rather than only by a failed entry
// per image: on this store nothing can be proven without a registry.
func (g *Guard) vouch(ctx context.Context, p *policy.Policy, img Image, sigs policy.SignatureSource) vouched {
	v := vouch(ctx, g.prov, p, g.now(), img, sigs)
	if v.unknown != nil && provenance.NoNetwork(v.unknown) {
		g.noNetwork.Do(func() {
			g.log.WithError(v.unknown).Warn("docker: cannot ask registries whether they serve an image's content (no network for pullguard); " +
				"on dockerd's containerd image store local-images: deny then keeps every image (reported failed) and the authorization plugin " +
				"refuses to run or tag it: allow pullguard the network (pullguard(8), NETWORK)")
		})
	}
	return v
}

// vouchFunc vouches for one image (vouch, with the pass's policy).
type vouchFunc func(ctx context.Context, img Image) vouched
