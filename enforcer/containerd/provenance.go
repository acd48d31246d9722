package containerd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

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

// Registry answers whether a repository serves a manifest digest.
// enforcer/registry's Client is one.
type Registry interface {
	HasManifest(ctx context.Context, repository, digest string) (bool, error)
}

// WithRegistry makes the guard judge provenance under local-images: deny.
// Without it the guard judges names only.
func WithRegistry(r Registry) Option {
	return func(g *Guard) {
		g.prov = &provenanceCache{reg: r, answers: map[servedKey]servedAnswer{}, now: time.Now}
	}
}

// evidence is what the registry said about one content's names. nil means
// no registry is asked: names alone are judged.
type evidence struct {
	// served are repo@target names of repositories that serve the content.
	served []string
	// unknown says why a repository could not be asked; nil when every
	// answer was definite.
	unknown error
}

// Answers are kept per (repository, digest): a yes for long (a manifest
// digest names one content forever), a no briefly (the content may be
// pushed there later), an error not at all (the next reconcile asks again).
const (
	servedTTL    = time.Hour
	notServedTTL = time.Minute
	maxAnswers   = 4096
)

type servedKey struct{ repository, digest string }

type servedAnswer struct {
	served bool
	until  time.Time
}

type provenanceCache struct {
	reg     Registry
	now     func() time.Time
	mu      sync.Mutex
	answers map[servedKey]servedAnswer
	// noNetwork is logged once: the process may not open network sockets
	// at all (the shipped unit's RestrictAddressFamilies=AF_UNIX).
	noNetwork sync.Once
}

func (c *provenanceCache) served(ctx context.Context, repository, digest string) (bool, error) {
	k := servedKey{repository, digest}
	now := c.now()
	c.mu.Lock()
	a, ok := c.answers[k]
	c.mu.Unlock()
	if ok && now.Before(a.until) {
		return a.served, nil
	}
	served, err := c.reg.HasManifest(ctx, repository, digest)
	if err != nil {
		return false, err
	}
	ttl := notServedTTL
	if served {
		ttl = servedTTL
	}
	c.mu.Lock()
	if len(c.answers) >= maxAnswers {
		clear(c.answers) // bounded; a reconcile refills what is in use
	}
	c.answers[k] = servedAnswer{served: served, until: now.Add(ttl)}
	c.mu.Unlock()
	return served, nil
}

// gatherEvidence asks the registry about the repositories of the names the
// policy allows on content but its provenance does not yet prove. It asks
// nothing when there is no registry, the policy judges names only, or
// every allowed name is already proven (CRI's repo@digest records).
//
// sigs answers for signed-by rules as in planContent: a name such a rule
// allows is one whose provenance is asked about.
func (g *Guard) gatherEvidence(ctx context.Context, p *policy.Policy, now time.Time, recs []Image, target string, sigs policy.SignatureSource) *evidence {
	if g.prov == nil || p.LocalImages != policy.LocalImagesDeny {
		return nil
	}
	ev := &evidence{}
	if target == "" {
		return ev
	}
	v := p.DecideImageWith(recordNames(recs), target, now, sigs)
	asked := map[string]bool{}
	for _, n := range v.Names {
		if !n.Unproven {
			continue
		}
		r, err := p.ParseRef(n.Name)
		if err != nil || asked[r.Name] {
			continue
		}
		asked[r.Name] = true
		served, err := g.prov.served(ctx, r.Name, target)
		switch {
		case errors.Is(err, syscall.EAFNOSUPPORT):
			// Not an outage but how pullguard runs: it may not use the
			// network. Names alone are judged, as without a registry,
			// rather than a failure for every record at every reconcile.
			g.prov.noNetwork.Do(func() {
				g.log.WithError(err).Warn("containerd: cannot ask registries whether they serve an image's content (no network for pullguard); " +
					"local-images: deny is judged by names alone on containerd")
			})
			return nil
		case err != nil:
			ev.unknown = fmt.Errorf("whether %s serves %s is unknown: %w", r.Name, target, err)
		case served:
			ev.served = append(ev.served, r.Name+"@"+target)
		}
	}
	if len(ev.served) > 0 {
		ev.unknown = nil // one repository vouches: the content came from it
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
			d.Allowed, d.Reason = true, "provenance not known yet: "+ev.unknown.Error()
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
