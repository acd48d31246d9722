package policy

import (
	"math/bits"
	"strings"
)

// resemblanceIndex holds the names that allow rules spell out, by registry,
// to tell when a denied reference is a near miss of an allowed one
// (myorg-base for myorg/base, ngnix for nginx): the typosquatting case.
//
// A name is compared with candidates of its own registry only, through two
// maps, so a denial costs a few lookups however long the policy is: one for
// names equal but for separators, and one by length for names within two
// edits (only names whose lengths differ by at most two can be).
type resemblanceIndex struct {
	hosts map[string]*hostNames
	order []string // hosts in policy order, for a stable answer
}

type hostNames struct {
	squashedHost string
	first        string // the first allow pattern on this host
	shapes       []int  // distinct shapes present, see shapeKey
	squashed     map[nameKey]string
	byLen        map[lenKey][]candidate
}

// shape is how much of a reference's path a candidate compares with: -1 for
// the whole path (a pattern without globs), k for the first k segments (a
// pattern whose literal part is k segments long, like approved/**).
type nameKey struct {
	shape int
	name  string
}

type lenKey struct{ shape, length int }

type candidate struct {
	path    string // familiar path: docker.io's library/ dropped
	chars   uint64 // which characters path holds, see charSet
	display string
}

func newResemblanceIndex(allow []*Rule, patterns map[*Rule]pattern) *resemblanceIndex {
	ix := &resemblanceIndex{hosts: map[string]*hostNames{}}
	for _, r := range allow {
		p := patterns[r]
		if p.anyHost || strings.Contains(p.host, "*") {
			continue
		}
		lit := 0
		for lit < len(p.segments) && !strings.Contains(p.segments[lit], "*") {
			lit++
		}
		shape := lit
		if lit == len(p.segments) {
			shape = -1
		}
		path := familiarPath(p.host, strings.Join(p.segments[:lit], "/"))
		hn := ix.hosts[p.host]
		if hn == nil {
			hn = &hostNames{squashedHost: squash(p.host), first: r.Pattern, squashed: map[nameKey]string{}, byLen: map[lenKey][]candidate{}}
			ix.hosts[p.host] = hn
			ix.order = append(ix.order, p.host)
		}
		if lit == 0 {
			continue // nothing literal below the host to compare with
		}
		if !containsInt(hn.shapes, shape) {
			hn.shapes = append(hn.shapes, shape)
		}
		sk := nameKey{shape, squash(path)}
		if _, ok := hn.squashed[sk]; !ok {
			hn.squashed[sk] = r.Pattern
		}
		lk := lenKey{shape, len(path)}
		hn.byLen[lk] = append(hn.byLen[lk], candidate{path: path, chars: charSet(path), display: r.Pattern})
	}
	return ix
}

// resembling returns the allowed pattern that ref most plausibly imitates,
// or "" when none is close.
func (ix *resemblanceIndex) resembling(ref *Ref) string {
	if hn := ix.hosts[ref.Domain]; hn != nil {
		path := familiarPath(ref.Domain, ref.Path)
		for _, shape := range hn.shapes {
			q, ok := pathPrefix(path, shape)
			if !ok {
				continue
			}
			if d := hn.near(shape, q); d != "" {
				return d
			}
		}
		return ""
	}
	// An unknown registry: is it a near miss of an allowed one?
	sq := squash(ref.Domain)
	for _, host := range ix.order {
		hn := ix.hosts[host]
		if hn.squashedHost == sq || withinTwoEdits(host, ref.Domain) {
			return hn.first
		}
	}
	return ""
}

func (hn *hostNames) near(shape int, q string) string {
	// Equal once separators are dropped; an exact match is no near miss.
	if d, ok := hn.squashed[nameKey{shape, squash(q)}]; ok && !hasPath(hn.byLen[lenKey{shape, len(q)}], q) {
		return d
	}
	qc := charSet(q)
	for l := len(q) - 2; l <= len(q)+2; l++ {
		for _, c := range hn.byLen[lenKey{shape, l}] {
			// Two edits change which characters a name holds in at most
			// four places: a cheap test that spares most distance checks.
			if bits.OnesCount64(c.chars^qc) > 4 {
				continue
			}
			if c.path != q && withinTwoEdits(c.path, q) {
				return c.display
			}
		}
	}
	return ""
}

func hasPath(cs []candidate, p string) bool {
	for _, c := range cs {
		if c.path == p {
			return true
		}
	}
	return false
}

// pathPrefix returns the first k segments of path, or the whole path for
// shape -1; ok is false when the path is shorter than k segments.
func pathPrefix(path string, shape int) (string, bool) {
	if shape < 0 {
		return path, true
	}
	end := 0
	for i := 0; i < shape; i++ {
		if end > 0 {
			end++ // the slash
		}
		if end > len(path) {
			return "", false
		}
		j := strings.IndexByte(path[end:], '/')
		if j < 0 {
			if i == shape-1 {
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

// withinTwoEdits is a Levenshtein distance check that gives up early.
func withinTwoEdits(a, b string) bool {
	if d := len(a) - len(b); d > 2 || d < -2 {
		return false
	}
	var rows [2][300]int
	prev, cur := rows[0][:], rows[1][:]
	if len(b)+1 > len(prev) {
		prev, cur = make([]int, len(b)+1), make([]int, len(b)+1)
	}
	for j := 0; j <= len(b); j++ {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin > 2 {
			return false
		}
		prev, cur = cur, prev
	}
	return prev[len(b)] <= 2
}

// charSet maps the characters of a name to the bits of a word; characters
// outside a repository name's alphabet share the last bit.
func charSet(s string) uint64 {
	var m uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			m |= 1 << (c - 'a')
		case c >= '0' && c <= '9':
			m |= 1 << (26 + c - '0')
		case c == '-':
			m |= 1 << 36
		case c == '_':
			m |= 1 << 37
		case c == '.':
			m |= 1 << 38
		case c == '/':
			m |= 1 << 39
		default:
			m |= 1 << 63
		}
	}
	return m
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
