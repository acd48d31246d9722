package evidence

import (
	"slices"
	"sync"
	"time"

	"github.com/pullguard/pullguard/policy"
)

// verdictTTL is how long a verdict reached on verified evidence is kept:
// as long as its answers are (provenance.ServedTTL, and the signature
// cache's lifetime of a valid signature).
const verdictTTL = time.Hour

// maxVerdicts bounds the cache: a host holds a few thousand images.
const maxVerdicts = 4096

// verdictCache keeps verdicts reached on verified evidence, keyed on the
// policy's hash and the content's digest. A hit must be the same question:
// the same names, in the same order, on a store that proves as much, and
// before any rule of the policy expires (which could change the verdict
// without any evidence changing). An undecided verdict, or one that rests
// on a negative answer, is never put in, so that a hit never returns
// what was not verified.
//
// Verdicts kept from the last run (verdictfile.go) wait in restored until
// the same question is asked: the evidence they rest on is then given to
// the policy core again, and the verdict is taken only if the core reaches
// it on that evidence alone.
type verdictCache struct {
	mu       sync.Mutex
	entries  map[verdictKey]cachedVerdict
	restored map[verdictKey]cachedVerdict
	// changes counts puts, for the file to know whether to write.
	changes uint64
	// expiry remembers, for the last policy seen, the first instant a rule
	// expires (zero: none does): computing it walks every rule.
	expiryOf string
	expiry   []time.Time
}

type verdictKey struct{ policyHash, digest string }

type cachedVerdict struct {
	img     policy.Image
	verdict policy.Verdict
	until   time.Time
	// evidence is the verified answers the verdict rests on; nil when they
	// cannot be written down (kept in memory only).
	evidence *verified
}

func (c *verdictCache) get(p *policy.Policy, img policy.Image, now time.Time) (policy.Verdict, bool) {
	if img.Digest == "" {
		return policy.Verdict{}, false
	}
	k := verdictKey{p.Hash, img.Digest}
	c.mu.Lock()
	e, ok := c.entries[k]
	if !ok {
		if r, found := c.restored[k]; found && sameImage(r.img, img) {
			delete(c.restored, k) // used once: taken, or judged afresh
			c.mu.Unlock()
			return c.replay(p, img, now, r)
		}
	}
	c.mu.Unlock()
	if !ok || !now.Before(e.until) || !sameImage(e.img, img) {
		return policy.Verdict{}, false
	}
	v := e.verdict
	v.Names = slices.Clone(v.Names) // a caller may change its copy
	return v, true
}

// replay judges img on the evidence a restored verdict rests on, asking
// nobody, and keeps the verdict when the core reaches the same outcome on
// that evidence alone.
func (c *verdictCache) replay(p *policy.Policy, img policy.Image, now time.Time, r cachedVerdict) (policy.Verdict, bool) {
	if !now.Before(r.until) {
		return policy.Verdict{}, false
	}
	ev := &replayed{ev: r.evidence}
	v := p.Judge(img, now, ev)
	if ev.missed || v.Outcome != r.verdict.Outcome {
		return policy.Verdict{}, false
	}
	c.mu.Lock()
	c.store(verdictKey{p.Hash, img.Digest}, cachedVerdict{img: img, verdict: v, until: r.until, evidence: r.evidence})
	c.mu.Unlock()
	v.Names = slices.Clone(v.Names)
	return v, true
}

func (c *verdictCache) put(p *policy.Policy, img policy.Image, now time.Time, v policy.Verdict, ttl time.Duration, ev *verified) {
	if img.Digest == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	until := now.Add(ttl)
	if e := c.nextExpiry(p, now); !e.IsZero() && e.Before(until) {
		until = e
	}
	img.Names = slices.Clone(img.Names) // the caller's slice may change
	c.store(verdictKey{p.Hash, img.Digest}, cachedVerdict{img: img, verdict: v, until: until, evidence: ev})
	c.changes++
}

// store puts an entry in; c.mu is held.
func (c *verdictCache) store(k verdictKey, e cachedVerdict) {
	if c.entries == nil || len(c.entries) >= maxVerdicts {
		c.entries = map[verdictKey]cachedVerdict{} // bounded; a reconcile refills what is in use
	}
	c.entries[k] = e
}

// nextExpiry is the first instant after now at which a rule of p expires.
func (c *verdictCache) nextExpiry(p *policy.Policy, now time.Time) time.Time {
	if c.expiryOf != p.Hash {
		c.expiryOf, c.expiry = p.Hash, nil
		for _, rules := range [][]*policy.Rule{p.Allow, p.Deny} {
			for _, r := range rules {
				if r.Expires != nil {
					c.expiry = append(c.expiry, *r.Expires)
				}
			}
		}
		slices.SortFunc(c.expiry, time.Time.Compare)
	}
	for _, e := range c.expiry {
		if e.After(now) {
			return e
		}
	}
	return time.Time{}
}

func sameImage(a, b policy.Image) bool {
	return a.Digest == b.Digest && a.DigestNamesProveOrigin == b.DigestNamesProveOrigin &&
		a.Pulling == b.Pulling && slices.Equal(a.Names, b.Names)
}
