package policy

import (
	"strings"
	"sync"
	"time"
)

// resemblanceIndex tells when a denied reference is a near miss of what an
// allow rule names: a repository within two edits or equal but for
// separators (myorg-base for myorg/base, ngnix for nginx), or a registry
// host likewise (ghrc.io for ghcr.io): the typosquatting case.
//
// A hint must cost the same at 10 rules as at 100,000, so no name is
// compared with every allowed one. Each allowed name b is split into halves
// at len(b)/2; if a query a is within two edits of b, either b's head is
// within one edit of a prefix of a of nearly the same length, or both edits
// are in the head and b's tail is a suffix of a exactly. Two strings within
// one edit share a string obtained by deleting at most one character from
// each. The index therefore holds, hashed, each name's head with its
// one-deletion variants, its tail, and its squashed form (about len(b)/2+3
// entries a name); a query probes the variants of its five candidate
// prefixes and its five candidate suffixes, and only the names found are
// measured with the exact distance. The postings are one sorted array of
// 64-bit words, 8 bytes an entry.
type resemblanceIndex struct {
	allow []*Rule
	// hosts are the literal hosts allow rules name, in policy order; a
	// host's id is its position.
	hosts   []string
	hostIDs map[string]int32
	// shapes lists, per host id, the shapes its names come in (see
	// nameShape), in order of first appearance.
	shapes [][]int8
	// ruleHost and ruleShape say, for each allow rule, under which host id
	// and shape its name is posted (-1 for a rule not posted), so that a
	// key that matched by chance is recognised.
	ruleHost  []int32
	ruleShape []int8
	postings  postings
	// memo remembers recent answers (nil: none): a hint depends on the
	// repository, not on the tag, and a list of references names the
	// same repositories at many tags.
	memo *hintMemo
}

// hintMemo maps a repository on a host some allow rule names (host/path)
// to its hint, and any other host to the allowed host it resembles ("" for
// none): keys that cannot collide, as only the first has a slash.
type hintMemo struct {
	mu  sync.Mutex
	gen generations[string]
}

// hintMemoSize bounds the memo like the parsed-reference cache.
const hintMemoSize = refCacheSize

func newHintMemo() *hintMemo { return &hintMemo{gen: generations[string]{max: hintMemoSize}} }

func (m *hintMemo) find(key string, search func() string) string {
	if m == nil {
		return search()
	}
	m.mu.Lock()
	hint, current, ok := m.gen.get(key)
	m.mu.Unlock()
	if current {
		return hint
	}
	if !ok {
		hint = search()
	}
	m.mu.Lock()
	m.gen.put(strings.Clone(key), hint) // the key may be part of a longer input
	m.mu.Unlock()
	return hint
}

// Kinds of posting, mixed into every key so that the halves of repository
// paths, of hosts, and squashed names never meet.
const (
	kindHead = iota
	kindTail
	kindSquashed
)

func newResemblanceIndex(allow []*Rule, patterns map[*Rule]pattern) *resemblanceIndex {
	ix := &resemblanceIndex{allow: allow, hostIDs: map[string]int32{}, memo: newHintMemo(),
		ruleHost: make([]int32, len(allow)), ruleShape: make([]int8, len(allow))}
	// About 14 postings a name of fleet-like length, allocated once.
	pb := postingBuilder{words: make([]uint64, 0, 14*len(allow)+64)}
	var hb hasher
	for i, r := range allow {
		ix.ruleHost[i] = -1
		p := patterns[r]
		if p.anyHost || strings.Contains(p.host, "*") {
			continue
		}
		id, ok := ix.hostIDs[p.host]
		if !ok {
			id = int32(len(ix.hosts))
			ix.hostIDs[p.host] = id
			ix.hosts = append(ix.hosts, p.host)
			ix.shapes = append(ix.shapes, nil)
			pb.addName(&hb, hostContext(), p.host, uint32(id))
		}
		shape, ok := nameShape(p)
		if !ok {
			continue // nothing literal below the host to compare with
		}
		if !containsShape(ix.shapes[id], shape) {
			ix.shapes[id] = append(ix.shapes[id], shape)
		}
		name, _ := ruleName(r, p.host, shape)
		ix.ruleHost[i], ix.ruleShape[i] = id, shape
		pb.addName(&hb, pathContext(id, shape), name, uint32(i))
	}
	ix.postings = pb.build()
	return ix
}

// nameShape is how much of a reference's path an allow rule's name is
// compared with: -1 for the whole path (a pattern without globs), k for the
// first k segments (a pattern whose literal part is k segments long, like
// approved/**). ok is false when nothing below the host is literal.
func nameShape(p pattern) (shape int8, ok bool) {
	lit := 0
	for lit < len(p.segments) && !strings.Contains(p.segments[lit], "*") {
		lit++
	}
	if lit == 0 || lit > 127 {
		return 0, false
	}
	if lit == len(p.segments) {
		return -1, true
	}
	return int8(lit), true
}

// ruleName is the familiar path an allow rule names on host, cut to shape,
// taken from the rule's normalized pattern without allocating.
func ruleName(r *Rule, host string, shape int8) (string, bool) {
	path := r.Pattern[len(host)+1:]
	path, ok := pathPrefix(path, shape)
	return familiarPath(host, path), ok
}

// resembling returns what ref most plausibly imitates, or "": the first
// allow rule (in policy order) whose name is a near miss of ref's, or, for
// a host no allow rule names, the allowed host it is a near miss of.
func (p *Policy) resembling(ref *Ref, now time.Time) string {
	ix := p.names
	if id, ok := ix.hostIDs[ref.Domain]; ok {
		return ix.memo.find(ref.Name, func() string { return ix.nameResembling(ref, id) })
	}
	// An unknown registry: is it a near miss of an allowed one?
	host := ix.memo.find(ref.Domain, func() string { return ix.hostResembling(ref.Domain) })
	if host == "" {
		return ""
	}
	// Name the rule the same reference would have matched on the real
	// registry, if one does: that is what the look-alike imitates.
	real := *ref
	real.Domain = host
	m := matcher{rules: p.Allow, ref: real, now: now}
	m.run(p.allowIdx)
	if m.best >= 0 {
		return p.Allow[m.best].Pattern
	}
	return host
}

// nameResembling is the pattern of the first allow rule on ref's host
// (host id) whose name is a near miss of ref's, or "".
func (ix *resemblanceIndex) nameResembling(ref *Ref, id int32) string {
	path := familiarPath(ref.Domain, ref.Path)
	best := int32(-1)
	for _, shape := range ix.shapes[id] {
		q, ok := pathPrefix(path, shape)
		if !ok {
			continue
		}
		ix.postings.near(q, pathContext(id, shape), func(cand uint32) (string, bool) {
			if int(cand) >= len(ix.allow) || ix.ruleHost[cand] != id || ix.ruleShape[cand] != shape {
				return "", false // another name's key, equal by chance
			}
			return ruleName(ix.allow[cand], ref.Domain, shape)
		}, &best)
	}
	if best >= 0 {
		return ix.allow[best].Pattern
	}
	return ""
}

// hostResembling is the first allowed host that host is a near miss of,
// or "".
func (ix *resemblanceIndex) hostResembling(host string) string {
	best := int32(-1)
	ix.postings.near(host, hostContext(), func(cand uint32) (string, bool) {
		if int(cand) >= len(ix.hosts) {
			return "", false
		}
		return ix.hosts[cand], true
	}, &best)
	if best < 0 {
		return ""
	}
	return ix.hosts[best]
}

func pathContext(host int32, shape int8) uint64 {
	return uint64(host)<<16 | uint64(uint8(shape))<<8 | 1
}

func hostContext() uint64 { return 2 }

// postings maps 32-bit keys to ids: one sorted array of key<<32|id words,
// with a directory by the key's top 16 bits. A false match of two keys only
// costs a distance check.
type postings struct {
	words []uint64
	dir   []uint32 // dir[k] is the first word whose key's top bits (key>>shift) are >= k
	shift uint32
	// present has a bit set for the low bits of every key: most probes
	// find nothing, and this says so from one word in cache.
	present []uint64
	mask    uint32
}

type postingBuilder struct{ words []uint64 }

// addName posts name's two halves with their one-deletion variants, and
// its squashed form, under ctx.
func (pb *postingBuilder) addName(h *hasher, ctx uint64, name string, id uint32) {
	h.reset(name)
	m := len(name) / 2
	h.variants(0, m, func(v uint64) { pb.add(key(ctx, kindHead, v), id) })
	pb.add(key(ctx, kindTail, h.sum(m, len(name))), id)
	var hs hasher
	hs.reset(squash(name))
	pb.add(key(ctx, kindSquashed, hs.sum(0, hs.n)), id)
}

func (pb *postingBuilder) add(k uint32, id uint32) {
	pb.words = append(pb.words, uint64(k)<<32|uint64(id))
}

func (pb *postingBuilder) build() postings {
	w := radixSortKeys(pb.words)
	// Drop repeats (a name's variants often coincide) and spare capacity.
	out := w[:0]
	for i, x := range w {
		if i == 0 || x != w[i-1] {
			out = append(out, x)
		}
	}
	words := out
	if len(out) < cap(w)*3/4 {
		words = make([]uint64, len(out))
		copy(words, out)
	}
	// About a word a directory entry, up to 16 bits: a small policy's
	// index is not 256 KiB.
	bits := uint32(4)
	for bits < 16 && 1<<bits < len(words) {
		bits++
	}
	shift := 32 - bits // a key's top bits index the directory
	dir := make([]uint32, 1<<bits+1)
	j := 0
	for k := 0; k <= 1<<bits; k++ {
		for j < len(words) && int(words[j]>>(32+shift)) < k {
			j++
		}
		dir[k] = uint32(j)
	}
	// About 8 bits a key, a power of two; at least 4 KiB.
	size := uint32(1 << 15)
	for int(size) < 8*len(words) && size < 1<<31 {
		size <<= 1
	}
	present := make([]uint64, size/64)
	for _, w := range words {
		b := uint32(w>>32) & (size - 1)
		present[b/64] |= 1 << (b % 64)
	}
	return postings{words: words, dir: dir, shift: shift, present: present, mask: size - 1}
}

// radixSortKeys sorts postings by key, four passes of a byte each over the
// key's 32 bits: several times faster than a comparison sort on the
// millions of postings of a large allowlist. The sort is stable, so the
// postings of one key stay in id order and repeats end up adjacent.
func radixSortKeys(w []uint64) []uint64 {
	tmp := make([]uint64, len(w))
	src, dst := w, tmp
	for shift := uint(32); shift < 64; shift += 8 {
		var count [257]int
		for _, x := range src {
			count[(x>>shift)&0xff+1]++
		}
		for i := 1; i < len(count); i++ {
			count[i] += count[i-1]
		}
		for _, x := range src {
			b := (x >> shift) & 0xff
			dst[count[b]] = x
			count[b]++
		}
		src, dst = dst, src
	}
	return src // four passes: back in w
}

// lookup calls fn with the ids posted under k, in increasing order, until
// fn returns false: a search for the lowest id that qualifies stops at
// the first id above the best found so far.
func (ps *postings) lookup(k uint32, fn func(id uint32) bool) {
	if len(ps.words) == 0 {
		return
	}
	if b := k & ps.mask; ps.present[b/64]&(1<<(b%64)) == 0 {
		return
	}
	lo, hi := int(ps.dir[k>>ps.shift]), int(ps.dir[k>>ps.shift+1])
	want := uint64(k) << 32
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ps.words[mid] < want {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	for i := lo; i < len(ps.words) && ps.words[i]>>32 == uint64(k); i++ {
		if !fn(uint32(ps.words[i])) {
			return
		}
	}
}

// near finds the ids posted under ctx whose name (nameOf) is within two
// edits of q or equal to it but for separators, but not q itself, and
// leaves the lowest in *best.
func (ps *postings) near(q string, ctx uint64, nameOf func(id uint32) (string, bool), best *int32) {
	sq := squash(q)
	var h hasher
	h.reset(sq)
	ps.lookup(key(ctx, kindSquashed, h.sum(0, h.n)), func(id uint32) bool {
		if *best >= 0 && int32(id) >= *best {
			return false
		}
		if name, ok := nameOf(id); ok && name != q && squash(name) == sq {
			*best = int32(id)
		}
		return true
	})
	// A name is found through several of its variants (in a policy of
	// similar names, one key can stand for a hundred): measure it once.
	var tried idSet
	consider := func(id uint32) bool {
		if *best >= 0 && int32(id) >= *best {
			return false
		}
		if !tried.add(id) {
			return true
		}
		if name, ok := nameOf(id); ok && name != q && withinTwoEdits(name, q) {
			*best = int32(id)
		}
		return true
	}
	h.reset(q)
	n := len(q)
	// The names within two edits are 2 shorter to 2 longer; each is split
	// at half its length, and either its head is within one edit of a
	// prefix of q one shorter to one longer than that head, or both edits
	// fall in the head and its tail is a suffix of q as it is.
	var seenHead, seenTail [8]int
	nh, nt := 0, 0
	for lb := n - 2; lb <= n+2; lb++ {
		if lb < 1 {
			continue
		}
		m := lb / 2
		for d := -1; d <= 1; d++ {
			if p := m + d; p >= 0 && p <= n && !seen(seenHead[:nh], p) && nh < len(seenHead) {
				seenHead[nh] = p
				nh++
				h.variants(0, p, func(v uint64) { ps.lookup(key(ctx, kindHead, v), consider) })
			}
			if t := lb - m; d == 0 && t >= 0 && t <= n && !seen(seenTail[:nt], t) && nt < len(seenTail) {
				seenTail[nt] = t
				nt++
				ps.lookup(key(ctx, kindTail, h.sum(n-t, n)), consider)
			}
		}
	}
}

// idSet is a small set of ids, open addressing on the stack. Once it is
// three quarters full it admits every further id as new: a repeat then
// costs one more distance check, never a wrong answer.
type idSet struct {
	n     int
	slots [256]uint32 // id+1; 0 is empty
}

func (s *idSet) add(id uint32) bool {
	if s.n >= len(s.slots)*3/4 {
		return true
	}
	v := id + 1
	for i := (v * 0x9e3779b1) >> 24; ; i = (i + 1) % uint32(len(s.slots)) {
		switch s.slots[i] {
		case v:
			return false
		case 0:
			s.slots[i] = v
			s.n++
			return true
		}
	}
}

func seen(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// key mixes a context, a kind and a string hash into a 32-bit key.
func key(ctx uint64, kind int, h uint64) uint32 {
	x := h ^ (ctx*0x9e3779b97f4a7c15 + uint64(kind)*0xc2b2ae3d27d4eb4f)
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return uint32(x)
}

// hasher holds the prefix hashes of a string (at most 256 bytes, the
// longest name), so that the hash of any substring, with or without one of
// its characters, is computed in constant time.
type hasher struct {
	n   int
	s   string
	pre [257]uint64
}

const hashBase = 0x100000001b3

var hashPow = func() (p [257]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * hashBase
	}
	return p
}()

func (h *hasher) reset(s string) {
	if len(s) > 256 {
		s = s[:256] // longer than any valid name; only a hint is at stake
	}
	h.s, h.n = s, len(s)
	for i := 0; i < len(s); i++ {
		h.pre[i+1] = h.pre[i]*hashBase + uint64(s[i]) + 1
	}
}

// sum is the hash of s[i:j].
func (h *hasher) sum(i, j int) uint64 { return h.pre[j] - h.pre[i]*hashPow[j-i] }

// variants calls fn with the hash of s[i:j] and of each string made by
// deleting one of its characters (once for a run of equal ones).
func (h *hasher) variants(i, j int, fn func(uint64)) {
	fn(h.sum(i, j))
	for k := i; k < j; k++ {
		if k > i && h.s[k] == h.s[k-1] {
			continue
		}
		fn(h.sum(i, k)*hashPow[j-k-1] + h.sum(k+1, j))
	}
}

// pathPrefix returns the first k segments of path, or the whole path for
// shape -1; ok is false when the path is shorter than k segments.
func pathPrefix(path string, shape int8) (string, bool) {
	if shape < 0 {
		return path, true
	}
	end := 0
	for i := 0; i < int(shape); i++ {
		if end > 0 {
			end++ // the slash
		}
		if end > len(path) {
			return "", false
		}
		j := strings.IndexByte(path[end:], '/')
		if j < 0 {
			if i == int(shape)-1 {
				return path, true
			}
			return "", false
		}
		end += j
	}
	return path[:end], true
}

func familiarPath(host, path string) string {
	if host == "docker.io" {
		return strings.TrimPrefix(path, "library/")
	}
	return path
}

func squash(s string) string {
	if !strings.ContainsAny(s, "-_./") {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '-', '_', '.', '/':
			return -1
		}
		return r
	}, s)
}

// withinTwoEdits reports whether a and b are at most two edits apart
// (Levenshtein distance: insertions, deletions, substitutions).
func withinTwoEdits(a, b string) bool { return withinEdits(a, b, 2) }

// withinEdits decides distance <= k by trying the k edits themselves: a
// common prefix or suffix never needs an edit (matching equal end
// characters is always optimal), so they are cut off, and the first
// characters left differ: substituting, deleting or inserting there are the
// only ways on, each with one edit less. For k = 2 that is at most a dozen
// calls, each giving up at the first difference, where the distance table
// would fill a band of it for every pair of names.
func withinEdits(a, b string, k int) bool {
	if d := len(a) - len(b); d > k || d < -k {
		return false
	}
	for len(a) > 0 && len(b) > 0 && a[0] == b[0] {
		a, b = a[1:], b[1:]
	}
	for len(a) > 0 && len(b) > 0 && a[len(a)-1] == b[len(b)-1] {
		a, b = a[:len(a)-1], b[:len(b)-1]
	}
	switch {
	case len(a) == 0 || len(b) == 0:
		return true // what is left is the length difference, checked above
	case k == 0:
		return false
	}
	return withinEdits(a[1:], b[1:], k-1) || withinEdits(a[1:], b, k-1) || withinEdits(a, b[1:], k-1)
}

func containsShape(xs []int8, x int8) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
