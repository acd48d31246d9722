package signature

import (
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/pullguard/pullguard/policy"
)

// cacheSize bounds the cache: a host holds a few thousand images at most.
const cacheSize = 4096

// How long an answer is kept. A valid signature stays valid (a key is
// revoked by changing the policy, which changes the key set and so the
// cache key); a missing or invalid one may be fixed by pushing a signature,
// so it is asked again soon; an unreachable registry is asked again at the
// next retry, but a burst of pulls does not hammer it.
var ttl = map[policy.SignatureStatus]time.Duration{
	policy.SignatureVerified:     time.Hour,
	policy.SignatureMissing:      30 * time.Second,
	policy.SignatureInvalid:      30 * time.Second,
	policy.SignatureUnverifiable: 5 * time.Second,
}

type entry[V any] struct {
	res     V
	expires time.Time
}

// cache keeps answers in two generations: when the current one is full it
// becomes the old one and the previous old one is dropped, which bounds
// memory without per-entry bookkeeping. It holds signature answers, and
// attestations (attestcache.go).
type cache[V any] struct {
	mu       sync.Mutex
	max      int
	cur, old map[string]entry[V]
	now      func() time.Time
	flight   singleflight.Group
	ttl      func(V) time.Duration
}

func newCache(max int) *cache[policy.SignatureResult] {
	return newCacheOf(max, func(res policy.SignatureResult) time.Duration { return ttl[res.Status] })
}

func newCacheOf[V any](max int, ttl func(V) time.Duration) *cache[V] {
	return &cache[V]{max: max, cur: map[string]entry[V]{}, now: time.Now, ttl: ttl}
}

// get returns the cached answer for key, or computes it once, however many
// callers ask at the same time.
func (c *cache[V]) get(key string, compute func() V) V {
	if res, ok := c.lookup(key); ok {
		return res
	}
	v, _, _ := c.flight.Do(key, func() (any, error) {
		if res, ok := c.lookup(key); ok {
			return res, nil
		}
		res := compute()
		c.store(key, res)
		return res, nil
	})
	return v.(V)
}

func (c *cache[V]) lookup(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cur[key]
	if !ok {
		e, ok = c.old[key]
	}
	if !ok || !c.now().Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.res, true
}

func (c *cache[V]) store(key string, res V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur) >= c.max {
		c.old, c.cur = c.cur, make(map[string]entry[V], c.max)
	}
	c.cur[key] = entry[V]{res: res, expires: c.now().Add(c.ttl(res))}
}
