package policy

import "sync"

// refCacheSize bounds the parsed-reference cache: a host rarely has more
// than a few thousand distinct references, and Kubernetes retries the same
// denied pull over and over.
const refCacheSize = 4096

// refCache remembers parsed references. Parsing with the reference
// grammar's regular expressions costs about 2 µs, several times the lookup
// itself, and a daemon sees the same references again and again (reconcile
// lists every image after every reload). Two generations keep it bounded
// without bookkeeping per entry: when the current one fills, it becomes the
// old one and the previous old one is dropped.
type refCache struct {
	mu       sync.Mutex
	max      int
	cur, old map[string]parsed
}

type parsed struct {
	ref Ref
	err error
}

func newRefCache(max int) *refCache {
	return &refCache{max: max, cur: make(map[string]parsed, max)}
}

func (c *refCache) parse(s string) (Ref, error) {
	c.mu.Lock()
	if e, ok := c.cur[s]; ok {
		c.mu.Unlock()
		return e.ref, e.err
	}
	e, ok := c.old[s]
	c.mu.Unlock()
	if !ok {
		e.ref, e.err = ParseRef(s)
	}
	if len(s) <= 512 { // a huge input is not worth keeping
		c.mu.Lock()
		if len(c.cur) >= c.max {
			c.old, c.cur = c.cur, make(map[string]parsed, c.max)
		}
		c.cur[s] = e
		c.mu.Unlock()
	}
	return e.ref, e.err
}
