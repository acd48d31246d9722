package containerd

import (
	"context"
	"time"

	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

// Provenance on containerd (local-images: deny). A containerd record does
// not say how it arrived: ctr import, a transfer-service pull and `ctr
// images tag` all make the same record. The content came from an allowed
// repository when that repository serves the record's target digest, so
// the guard asks the registry (a HEAD of the manifest by digest) for each
// repository whose name the policy allows on the content, and counts each
// yes as a digest name of the content, as CRI's own repo@sha256: records
// are (policy/provenance.go). A registry that cannot be reached proves
// nothing either way: the name is reported failed, kept, and judged again
// at the next reconcile.

// WithProvenance makes the guard judge provenance under local-images: deny
// by asking registries through c (shared with the Docker guard and the
// authorization plugin). Without it the guard judges names only.
func WithProvenance(c *provenance.Cache) Option { return func(g *Guard) { g.prov = c } }

// gatherEvidence asks the registry about the repositories of the names the
// policy allows on content but its provenance does not yet prove. It
// returns nil (names alone are judged) when there is no registry or the
// policy judges names only, and when pullguard may not use the network at
// all.
//
// sigs answers for signed-by rules as in planContent: a name such a rule
// allows is one whose provenance is asked about.
func (g *Guard) gatherEvidence(ctx context.Context, p *policy.Policy, now time.Time, recs []Image, target string, sigs policy.SignatureSource) *provenance.Evidence {
	if g.prov == nil || p.LocalImages != policy.LocalImagesDeny {
		return nil
	}
	ev := g.prov.Gather(ctx, p, now, recordNames(recs), target, sigs)
	if ev.Unknown != nil && provenance.NoNetwork(ev.Unknown) {
		// Not an outage but how pullguard runs: it may not use the
		// network. Names alone are judged, as without a registry,
		// rather than a failure for every record at every reconcile.
		g.noNetwork.Do(func() {
			g.log.WithError(ev.Unknown).Warn("containerd: cannot ask registries whether they serve an image's content (no network for pullguard); " +
				"local-images: deny is judged by names alone on containerd")
		})
		return nil
	}
	return ev
}

// recordDecision judges the image a container names by the record of that
// name, with the content's provenance, when the guard asks the registry and
// the record exists: an allowed name on content made on the host is no
// allowed image. ok is false otherwise (names alone are then judged).
func (g *Guard) recordDecision(ctx context.Context, ns, name string, p *policy.Policy, now time.Time) (policy.Decision, string, bool) {
	if g.prov == nil || p.LocalImages != policy.LocalImagesDeny {
		return policy.Decision{}, "", false
	}
	img, err := g.api.Image(ctx, ns, name)
	if err != nil || img.Target == "" {
		return policy.Decision{}, "", false
	}
	recs, err := g.api.ImagesByTarget(ctx, ns, img.Target)
	if err != nil {
		return policy.Decision{}, "", false
	}
	sigs := g.sigs(ctx)
	ev := g.gatherEvidence(ctx, p, now, recs, img.Target, sigs)
	plan := planContent(p, now, recs, img.Target, ev, sigs)
	if u := plan.Unverifiable; u != nil {
		return u.Decision, img.Target, true // reported failed, acted on later
	}
	for _, u := range plan.Unknown {
		if u.Name == name {
			// No definite answer: the container is left alone until one.
			d := u.Decision
			d.Allowed, d.Reason = true, "provenance not known yet: "+ev.Unknown.Error()
			return d, img.Target, true
		}
	}
	for i, r := range recs {
		if r.Name == name {
			// Judged as name@target; shown as the name, as for names alone.
			d := plan.Verdict.Names[i].Decision
			d.Reference = displayName(name)
			return d, img.Target, true
		}
	}
	return policy.Decision{}, "", false
}

func recordNames(recs []Image) []string {
	names := make([]string, len(recs))
	for i, r := range recs {
		names[i] = r.Name
	}
	return names
}
