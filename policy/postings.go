package policy

// This file is the look-alike index's machinery: posting lists of hashed
// name fragments and the near-match search over them.

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
