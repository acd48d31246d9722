package policy

import "strings"

// resemblanceIndex holds the names that allow rules spell out, by registry,
// to tell when a denied reference is a near miss of an allowed one
// (myorg-base for myorg/base, ngnix for nginx): the typosquatting case.
type resemblanceIndex struct {
	hosts map[string][]candidate
	order []string // hosts in policy order, for a stable answer
}

type candidate struct {
	path    string // familiar path: docker.io's library/ dropped
	segs    int
	literal bool // the pattern has no glob: compare whole paths
	display string
}

func newResemblanceIndex(allow []*Rule, patterns map[*Rule]pattern) *resemblanceIndex {
	ix := &resemblanceIndex{hosts: map[string][]candidate{}}
	for _, r := range allow {
		p := patterns[r]
		if p.anyHost || strings.Contains(p.host, "*") {
			continue
		}
		lit := 0
		for lit < len(p.segments) && !strings.Contains(p.segments[lit], "*") {
			lit++
		}
		c := candidate{
			path:    familiarPath(p.host, strings.Join(p.segments[:lit], "/")),
			segs:    lit,
			literal: lit == len(p.segments),
			display: r.Pattern,
		}
		if _, ok := ix.hosts[p.host]; !ok {
			ix.order = append(ix.order, p.host)
		}
		ix.hosts[p.host] = append(ix.hosts[p.host], c)
	}
	return ix
}

// resembling returns the allowed pattern that ref most plausibly imitates,
// or "" when none is close.
func (ix *resemblanceIndex) resembling(ref *Ref) string {
	for _, host := range ix.order {
		cands := ix.hosts[host]
		if host != ref.Domain {
			if close(host, ref.Domain) {
				return cands[0].display
			}
			continue
		}
		path := familiarPath(ref.Domain, ref.Path)
		segs := strings.Split(path, "/")
		for _, c := range cands {
			if c.literal {
				if close(c.path, path) {
					return c.display
				}
				continue
			}
			if c.segs == 0 || c.segs > len(segs) {
				continue
			}
			if close(c.path, strings.Join(segs[:c.segs], "/")) {
				return c.display
			}
		}
	}
	return ""
}

func familiarPath(host, path string) string {
	if host == "docker.io" {
		return strings.TrimPrefix(path, "library/")
	}
	return path
}

// close reports whether two different names differ only in separators or
// by at most two edits.
func close(a, b string) bool {
	if a == b {
		return false
	}
	if squash(a) == squash(b) {
		return true
	}
	return withinTwoEdits(a, b)
}

func squash(s string) string {
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
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
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
