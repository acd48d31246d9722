// Package provenance answers, for local-images: deny, whether an image's
// content came from a repository the policy allows, where the runtime's own
// records cannot say: containerd's image records (ctr import, a
// transfer-service pull and `ctr images tag` make the same record) and
// dockerd 29's containerd image store (which shows every name with the
// record's target as a repository digest, pulled or loaded alike). The
// content came from an allowed repository when that repository serves the
// content's manifest digest, so the registry is asked (a HEAD of the
// manifest by digest) about the repositories the policy core chooses
// (policy.Judge), and a yes counts as a digest name of the content, as
// Docker's own repository digests do (policy/provenance.go). A registry
// that cannot be reached proves nothing either way: the verdict is
// undecided, the name kept and reported failed, and asked about again at
// the next reconcile.
//
// The guards and the authorization plugin share one Cache (through
// enforcer/evidence), so a repository is asked about a content once for all
// of them.
package provenance

import (
	"context"
	"errors"
	"slices"
	"sync"
	"syscall"
	"time"
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

// NoNetwork reports whether err says that the process may not open network
// sockets at all (the shipped unit's RestrictAddressFamilies=AF_UNIX), as
// opposed to a registry that does not answer.
func NoNetwork(err error) bool { return errors.Is(err, syscall.EAFNOSUPPORT) }
