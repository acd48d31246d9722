// Package provenance answers, for local-images: deny, whether an image's
// content came from a repository the policy allows, where the runtime's own
// records cannot say: containerd's image records (ctr import, a
// transfer-service pull and `ctr images tag` make the same record) and
// dockerd 29's containerd image store (which shows every name with the
// record's target as a repository digest, pulled or loaded alike). The
// content came from an allowed repository when that repository serves the
// content's manifest digest, so the registry is asked (a HEAD of the
// manifest by digest) for each repository whose name the policy allows on
// the content, and each yes counts as a digest name of the content, as
// Docker's own repository digests and CRI's repo@sha256: records do
// (policy/provenance.go). A registry that cannot be reached proves nothing
// either way: the caller reports the name failed, keeps it, and asks again
// at the next reconcile.
//
// The containerd guard, the Docker guard and the authorization plugin share
// one Cache, so a repository is asked about a content once for all of them.
package provenance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/pullguard/pullguard/policy"
)

// Registry answers whether a repository serves a manifest digest.
// enforcer/registry's Client is one.
type Registry interface {
	HasManifest(ctx context.Context, repository, digest string) (bool, error)
}

// Answers are kept per (repository, digest): a yes for long (a manifest
// digest names one content forever), a no briefly (the content may be
// pushed there later), an error not at all (the next reconcile asks again).
const (
	ServedTTL    = time.Hour
	NotServedTTL = time.Minute
	maxAnswers   = 4096
)

type key struct{ repository, digest string }

type answer struct {
	served bool
	until  time.Time
}

// Cache asks a Registry and remembers its definite answers. It is safe for
// concurrent use.
type Cache struct {
	reg     Registry
	now     func() time.Time
	mu      sync.Mutex
	answers map[key]answer
	// origins are the repositories the registry once said serve a digest,
	// for as long as the process runs. Docker's own store keeps such a
	// record (a repository digest) after the name it was pulled under has
	// moved (a docker load) or gone; a containerd record, and so Docker
	// 29's, does not. A copy of pulled content under another allowed name
	// (a re-tag) is then still vouched for by where it came from, asked
	// again whenever the answer expires.
	origins map[string][]string
}

// New returns a cache over reg.
func New(reg Registry) *Cache {
	return &Cache{reg: reg, now: time.Now, answers: map[key]answer{}, origins: map[string][]string{}}
}

// WithClock sets the clock the cache's lifetimes are measured by (tests).
func (c *Cache) WithClock(now func() time.Time) *Cache { c.now = now; return c }

// Served reports whether repository serves the manifest digest, from the
// cache or by asking the registry. An error is no answer and is not kept.
func (c *Cache) Served(ctx context.Context, repository, digest string) (bool, error) {
	k := key{repository, digest}
	now := c.now()
	c.mu.Lock()
	a, ok := c.answers[k]
	c.mu.Unlock()
	if ok && now.Before(a.until) {
		return a.served, nil
	}
	p, _ := ctx.Value(passKey{}).(*pass)
	if err := p.failed(k); err != nil {
		return false, err
	}
	served, err := c.reg.HasManifest(ctx, repository, digest)
	if err != nil {
		p.fail(k, err)
		return false, err
	}
	ttl := NotServedTTL
	if served {
		ttl = ServedTTL
	}
	c.mu.Lock()
	if len(c.answers) >= maxAnswers {
		clear(c.answers) // bounded; a reconcile refills what is in use
	}
	c.answers[k] = answer{served: served, until: now.Add(ttl)}
	if served && !slices.Contains(c.origins[digest], repository) {
		if len(c.origins) >= maxAnswers {
			clear(c.origins)
		}
		c.origins[digest] = append(c.origins[digest], repository)
	}
	c.mu.Unlock()
	return served, nil
}

// Origins are the repositories known to have served digest, as long as the process runs.
func (c *Cache) Origins(digest string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.origins[digest])
}

// WithPass returns a context under which a question the registry failed to
// answer is not asked again: for one reconcile, which may judge an image
// twice (its survey, then its removal) and would otherwise wait out an
// unreachable registry's timeout each time. The next pass asks again.
func WithPass(ctx context.Context) context.Context {
	return context.WithValue(ctx, passKey{}, &pass{errs: map[key]error{}})
}

type passKey struct{}

// pass remembers one pass's failed questions; a nil pass remembers none.
type pass struct {
	mu   sync.Mutex
	errs map[key]error
}

func (p *pass) failed(k key) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errs[k]
}

func (p *pass) fail(k key, err error) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs[k] = err
}

// Evidence is what the registries said about one content.
type Evidence struct {
	// Served are repo@digest names of the repositories that serve the
	// content: digest names to judge the content with.
	Served []string
	// Unknown says why a repository could not be asked; nil when every
	// answer was definite, or when one repository vouches for the content
	// (it came from there, whatever the others would say).
	Unknown error
}

// NoNetwork reports whether err says that the process may not open network
// sockets at all (the shipped unit's RestrictAddressFamilies=AF_UNIX), as
// opposed to a registry that does not answer.
func NoNetwork(err error) bool { return errors.Is(err, syscall.EAFNOSUPPORT) }

// Gather asks about the repositories of the names p allows on the content
// digest but whose provenance nothing among names proves yet (a digest name
// the policy allows proves it: a CRI record, a Docker repository digest).
// It asks nothing, and returns empty evidence, when every allowed name is
// proven or none is allowed. sigs answers for signed-by rules as in the
// decision the caller makes: a name such a rule allows is one whose
// provenance is asked about.
func (c *Cache) Gather(ctx context.Context, p *policy.Policy, now time.Time, names []string, digest string, sigs policy.SignatureSource) *Evidence {
	ev := &Evidence{}
	if digest == "" {
		return ev
	}
	v := p.DecideImageWith(names, digest, now, sigs)
	if !slices.ContainsFunc(v.Names, func(n policy.NameDecision) bool { return n.Unproven }) {
		return ev // nothing to prove
	}
	asked := map[string]bool{}
	// Where the content is known to have come from first: a repository
	// the policy allows that served it, whatever the content is called now.
	for _, repo := range c.Origins(digest) {
		if len(ev.Served) > 0 {
			break
		}
		origin := repo + "@" + digest
		if p.DecideImageWith([]string{origin}, digest, now, sigs).Allowed {
			asked[repo] = true
			c.Ask(ctx, ev, repo, digest)
		}
	}
	for _, n := range v.Names {
		if len(ev.Served) > 0 {
			break // one allowed repository vouching is enough (policy/provenance.go)
		}
		if !n.Unproven {
			continue
		}
		r, err := p.ParseRef(n.Name)
		if err != nil || asked[r.Name] {
			continue
		}
		asked[r.Name] = true
		c.Ask(ctx, ev, r.Name, digest)
	}
	return ev
}

// Ask asks whether repository serves digest and adds the answer to ev.
func (c *Cache) Ask(ctx context.Context, ev *Evidence, repository, digest string) {
	served, err := c.Served(ctx, repository, digest)
	switch {
	case err != nil:
		if len(ev.Served) == 0 {
			ev.Unknown = fmt.Errorf("whether %s serves %s is unknown: %w", repository, digest, err)
		}
	case served:
		ev.Served = append(ev.Served, repository+"@"+digest)
		ev.Unknown = nil // one repository vouches: the content came from it
	}
}

// DockerNames is what to judge an image of dockerd's containerd image store
// (Docker 29's default) by under local-images: deny, given the names dockerd
// lists for it (RepoTags and RepoDigests) and its ID, which there is the
// records' target: a manifest or index digest. dockerd shows every record's
// name with that digest as a repository digest, whether the content was
// pulled, loaded or built (moby's daemon/containerd/image_inspect.go), so
// none of its digest names proves anything. They are set aside, and the
// registry is asked instead, as for a containerd record: the names returned
// are the image's tags and image IDs, the repo@digest names of the allowed
// repositories the registry says serve the content, and the digest names
// the policy denies anyway (a pull by digest of a disallowed repository,
// which must still go). A record named by an allowed digest that no
// registry confirms is left out: it proves nothing, and an image left with
// no name to judge is denied.
func (c *Cache) DockerNames(ctx context.Context, p *policy.Policy, now time.Time, id string, names []string, sigs policy.SignatureSource) ([]string, *Evidence) {
	judged := make([]string, 0, len(names))
	var digestNames []string
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		if r, err := p.ParseRef(n); err == nil && r.Tag == "" && r.Digest != "" {
			digestNames = append(digestNames, n)
			continue
		}
		judged = append(judged, n)
	}
	ev := c.Gather(ctx, p, now, judged, id, sigs)
	asked := map[string]bool{}
	for _, s := range ev.Served {
		if r, err := p.ParseRef(s); err == nil {
			asked[r.Name] = true
		}
	}
	for _, n := range digestNames {
		r, _ := p.ParseRef(n)
		if !p.DecideImageWith([]string{n}, "", now, sigs).Allowed {
			judged = append(judged, n) // denied whatever its content: it goes
			continue
		}
		if len(ev.Served) > 0 || r.Digest != id || asked[r.Name] {
			continue // about other content (not dockerd's own), or asked already
		}
		asked[r.Name] = true
		c.Ask(ctx, ev, r.Name, id)
	}
	return append(judged, ev.Served...), ev
}
