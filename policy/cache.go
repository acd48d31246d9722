package policy

import (
	"hash/maphash"
	"sync"
)

// refCacheSize bounds the parsed-reference cache: a host rarely has more
// than a few thousand distinct references, and Kubernetes retries the same
// denied pull over and over.
const refCacheSize = 4096

// refCache remembers parsed references. Parsing with the reference
// grammar's regular expressions costs about 2 µs, several times the lookup
// itself, and a daemon sees the same references again and again (reconcile
// lists every image after every reload).
//
// A reference is kept only when it is seen a second time: `check` over a
// list of distinct references would otherwise spend more on filling and
// dropping generations than on parsing, and one-off references would push
// out the ones that come back. seen remembers a fingerprint of the recent
// first sightings, one a slot; a collision only costs one more parse.
type refCache struct {
	mu   sync.Mutex
	gen  generations[parsed]
	seed maphash.Seed
	seen []uint32
}

type parsed struct {
	ref Ref
	err error
}

func newRefCache(max int) *refCache {
	return &refCache{gen: generations[parsed]{max: max}, seed: maphash.MakeSeed(), seen: make([]uint32, max)}
}

func (c *refCache) parse(s string) (Ref, error) {
	h := maphash.String(c.seed, s)
	slot, mark := h%uint64(len(c.seen)), uint32(h>>32)|1
	c.mu.Lock()
	e, current, ok := c.gen.get(s)
	if current {
		c.mu.Unlock()
		return e.ref, e.err
	}
	again := ok || c.seen[slot] == mark
	c.seen[slot] = mark
	c.mu.Unlock()
	if !ok {
		e.ref, e.err = ParseRef(s)
	}
	if again && len(s) <= 512 { // a huge input is not worth keeping
		c.mu.Lock()
		c.gen.put(s, e)
		c.mu.Unlock()
	}
	return e.ref, e.err
}

// generations is a map bounded without bookkeeping per entry: when the
// current generation fills, it becomes the old one and the previous old
// one is dropped. The caller locks, and puts again what it found in the
// old generation (current false) if it is worth keeping.
type generations[V any] struct {
	max      int
	cur, old map[string]V
}

func (g *generations[V]) get(k string) (v V, current, ok bool) {
	if v, ok := g.cur[k]; ok {
		return v, true, true
	}
	v, ok = g.old[k]
	return v, false, ok
}

func (g *generations[V]) put(k string, v V) {
	if g.cur == nil || len(g.cur) >= g.max {
		g.old, g.cur = g.cur, make(map[string]V, min(g.max, 256))
	}
	g.cur[k] = v
}
