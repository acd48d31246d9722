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
