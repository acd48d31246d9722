package docker

import (
	"context"
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
// kept, reported failed, and judged again at the next reconcile, until the
// grace for undecided provenance is over (enforcer/evidence).

// WithEvidence has the guard ask j what names cannot prove about content
// (signatures, and where content on dockerd's containerd image store came
// from), shared with the containerd guard and the authorization plugin.
// Without it signed-by rules deny every image they name, and on the
// containerd image store allowed names are undecided under local-images:
// deny.
func WithEvidence(j *evidence.Judge) Option { return func(g *Guard) { g.judge = j } }

// coreImage is an image in the core's terms: on the containerd image store
// its repository digests prove nothing, and its ID is the content's digest
// (contentDigest).
func coreImage(names []string, img *Image) policy.Image {
	if img == nil {
		return policy.Image{Names: names, DigestNamesProveOrigin: true}
	}
	return policy.Image{Names: names, Digest: contentDigest(*img), DigestNamesProveOrigin: !img.InContainerd}
}

// judgeNames is the verdict on img by names, asking ps what names cannot
// prove (nil: nothing is asked; signed-by rules deny, provenance that
// needs an answer is undecided).
func judgeNames(ps *evidence.Pass, p *policy.Policy, names []string, img *Image, now time.Time) policy.Verdict {
	if ps == nil {
		ps = (*evidence.Judge)(nil).Pass(context.Background())
	}
	return ps.Judge(p, coreImage(names, img), now)
}
