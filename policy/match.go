package policy

import (
	"path"
	"strings"
	"time"
)

// index finds the rules whose image pattern matches a repository without
// trying every rule: literal hosts are a map lookup, and below each host the
// path patterns form a trie of segments, so the cost of a lookup grows with
// the depth of the name and the number of globs on its way, not with the
// number of rules.
type index struct {
	hosts     map[string]*node
	hostGlobs []hostGlob // one per distinct host pattern with a glob
	anyHost   *node      // patterns that begin with **
}

type hostGlob struct {
	host   string
	labels []string // host split at ".", globs included
	root   *node
}

type node struct {
	lit   map[string]*node
	globs *nodeGlobs // nil for most nodes: a 100,000-rule allowlist is mostly literal
	rules []int32    // rules whose pattern ends here, by position in the list
	// below holds rules whose pattern ends in "/**" here: they match one or
	// more further segments, so registry/approved/** covers
	// registry/approved/x but not registry/approved itself.
	below []int32
}

type nodeGlobs struct {
	wild  []wildEdge // segments with * inside
	dstar *node      // a ** segment followed by more segments
}

// dstar is the node below a ** segment, or nil.
func (n *node) dstar() *node {
	if n.globs == nil {
		return nil
	}
	return n.globs.dstar
}

func (n *node) wild() []wildEdge {
	if n.globs == nil {
		return nil
	}
	return n.globs.wild
}

func (n *node) addDstar() *node {
	if n.globs == nil {
		n.globs = &nodeGlobs{}
	}
	if n.globs.dstar == nil {
		n.globs.dstar = &node{}
	}
	return n.globs.dstar
}

type wildEdge struct {
	glob string
	next *node
}

func newIndex() *index { return &index{hosts: map[string]*node{}} }

func (ix *index) add(p pattern, rule int) {
	var root *node
	switch {
	case p.anyHost:
		if ix.anyHost == nil {
			ix.anyHost = &node{}
		}
		root = ix.anyHost
	case strings.Contains(p.host, "*"):
		for i := range ix.hostGlobs {
			if ix.hostGlobs[i].host == p.host {
				root = ix.hostGlobs[i].root
			}
		}
		if root == nil {
			root = &node{}
			ix.hostGlobs = append(ix.hostGlobs, hostGlob{host: p.host, labels: strings.Split(p.host, "."), root: root})
		}
	default:
		root = ix.hosts[p.host]
		if root == nil {
			root = &node{}
			ix.hosts[p.host] = root
		}
	}
	segs := p.segments
	if p.anyHost {
		segs = segs[1:] // the leading ** is the host and any path before the rest
		root = ix.anyHost.addDstar()
	}
	n := root
	if len(segs) > 0 && segs[len(segs)-1] == "**" {
		for _, s := range segs[:len(segs)-1] {
			n = n.child(s)
		}
		n.below = append(n.below, int32(rule))
		return
	}
	for _, s := range segs {
		n = n.child(s)
	}
	n.rules = append(n.rules, int32(rule))
}

func (n *node) child(seg string) *node {
	switch {
	case seg == "**":
		return n.addDstar()
	case strings.Contains(seg, "*"):
		for _, e := range n.wild() {
			if e.glob == seg {
				return e.next
			}
		}
		c := &node{}
		if n.globs == nil {
			n.globs = &nodeGlobs{}
		}
		n.globs.wild = append(n.globs.wild, wildEdge{glob: seg, next: c})
		return c
	default:
		if n.lit == nil {
			n.lit = map[string]*node{}
		}
		c := n.lit[seg]
		if c == nil {
			c = &node{}
			n.lit[seg] = c
		}
		return c
	}
}

// matcher walks an index for one reference and keeps the first rule, in
// policy order, that matches it in full (repository, tag or digest, not
// expired), and the first one that only failed by having expired.
type matcher struct {
	rules []*Rule
	// aliases also tries host globs against Docker Hub's other spellings:
	// set for deny rules, where matching more is the cautious side.
	aliases bool
	ref     Ref // a copy: a pointer would put every reference decided on the heap
	now     time.Time
	best    int
	expired int

	// Signature requirements (signed.go): the evidence, the first rule that
	// lacked evidence, and the first that failed with its result.
	evidence       *Evidence
	needs          int
	unsigned       int
	unsignedResult SignatureResult
	// The same for attestation requirements (attest.go).
	att attestMatch
}

func (m *matcher) run(ix *index) {
	m.best, m.expired, m.needs, m.unsigned = -1, -1, -1, -1
	if n := ix.hosts[m.ref.Domain]; n != nil {
		m.walk(n, m.ref.Path)
	}
	for i := range ix.hostGlobs {
		if m.hostGlobMatches(ix.hostGlobs[i].labels) {
			m.walk(ix.hostGlobs[i].root, m.ref.Path)
			if name, ok := officialName(&m.ref); ok {
				m.walk(ix.hostGlobs[i].root, name)
			}
		}
	}
	if ix.anyHost != nil {
		m.walk(ix.anyHost, m.ref.Path)
	}
}

// officialName is the name an official image on Docker Hub is written by
// (nginx for docker.io/library/nginx). A pattern whose host is a glob is
// parsed before anyone knows that the host is Docker Hub, so Docker's
// library/ was never added to its one-segment name: *.docker.io/nginx names
// what registry-1.docker.io/nginx pulls, docker.io/library/nginx.
func officialName(ref *Ref) (string, bool) {
	if ref.Domain != "docker.io" {
		return "", false
	}
	name, ok := strings.CutPrefix(ref.Path, "library/")
	return name, ok && strings.IndexByte(name, '/') < 0
}

func (m *matcher) hostGlobMatches(labels []string) bool {
	if matchLabels(labels, m.ref.Domain, false) {
		return true
	}
	if m.aliases && m.ref.Domain == "docker.io" {
		for _, a := range dockerHubAliases {
			if matchLabels(labels, a, false) {
				return true
			}
		}
	}
	return false
}

// walk matches the path segments in rest (a valid path has no empty
// segment, so "" is the end), split as it goes: nothing is allocated.
func (m *matcher) walk(n *node, rest string) {
	if rest == "" {
		m.consider(n.rules)
	} else {
		m.consider(n.below)
		seg, tail := nextSegment(rest)
		if c := n.lit[seg]; c != nil {
			m.walk(c, tail)
		}
		for _, e := range n.wild() {
			if matchSegment(e.glob, seg) {
				m.walk(e.next, tail)
			}
		}
	}
	if d := n.dstar(); d != nil {
		// ** takes zero or more segments.
		for {
			m.walk(d, rest)
			if rest == "" {
				break
			}
			_, rest = nextSegment(rest)
		}
	}
}

func nextSegment(path string) (seg, rest string) {
	if i := strings.IndexByte(path, '/'); i >= 0 {
		return path[:i], path[i+1:]
	}
	return path, ""
}

func (m *matcher) consider(candidates []int32) {
	for _, c := range candidates {
		i := int(c)
		if m.best >= 0 && i > m.best {
			continue
		}
		r := m.rules[i]
		if !r.matchesVersion(&m.ref) {
			continue
		}
		if r.Expires != nil && !m.now.Before(*r.Expires) {
			if m.expired < 0 || i < m.expired {
				m.expired = i
			}
			continue
		}
		if r.SignedBy != nil && !m.signed(i, r) {
			continue
		}
		if r.Attestations != nil && !m.attested(i, r) {
			continue
		}
		m.best = i
	}
}

// matchesVersion applies the rule's tags and digests. A reference with both
// a tag and a digest matches if either value does: a deny rule for a tag
// catches it whatever digest is attached, and an allow rule that lists the
// digest allows exactly the content the runtime fetches.
func (r *Rule) matchesVersion(ref *Ref) bool {
	if len(r.Tags) == 0 && len(r.Digests) == 0 {
		return true
	}
	if ref.Tag != "" {
		for _, g := range r.Tags {
			if tagMatches(g, ref.Tag) {
				return true
			}
		}
	}
	if ref.Digest != "" {
		for _, d := range r.Digests {
			if d == ref.Digest {
				return true
			}
		}
	}
	return false
}

// tagMatches is path.Match(glob, tag) for a valid tag, with the answers
// that need no matching first: every reference is judged against the
// usual deny rule for :latest. A tag has no glob characters, so a glob
// equal to it is a literal that matches; a glob starting with a literal
// character matches only a tag starting with that character.
func tagMatches(glob, tag string) bool {
	switch {
	case glob == tag:
		return true
	case glob != "" && tag != "" && glob[0] != tag[0] && !isGlobMeta(glob[0]):
		return false
	}
	ok, _ := path.Match(glob, tag)
	return ok
}

func isGlobMeta(c byte) bool { return c == '*' || c == '?' || c == '[' || c == '\\' }

// matchLabels matches a host against a host pattern split at dots; the rest
// of the host is consumed label by label so nothing is allocated.
func matchLabels(pat []string, rest string, done bool) bool {
	if len(pat) == 0 {
		return done
	}
	if pat[0] == "**" {
		if matchLabels(pat[1:], rest, done) {
			return true
		}
		for !done {
			_, rest, done = nextLabel(rest)
			if matchLabels(pat[1:], rest, done) {
				return true
			}
		}
		return false
	}
	if done {
		return false
	}
	label, rest, done := nextLabel(rest)
	return matchSegment(pat[0], label) && matchLabels(pat[1:], rest, done)
}

func nextLabel(s string) (label, rest string, done bool) {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return s[:i], s[i+1:], false
	}
	return s, "", true
}

// matchSegment matches one path segment or host label against a glob in
// which * stands for any run of characters (never a / or a ., which the
// caller has already split at).
func matchSegment(glob, s string) bool {
	px, sx := 0, 0
	nextPx, nextSx := 0, 0
	for px < len(glob) || sx < len(s) {
		if px < len(glob) {
			c := glob[px]
			if c == '*' {
				nextPx, nextSx = px, sx+1
				px++
				continue
			}
			if sx < len(s) && s[sx] == c {
				px++
				sx++
				continue
			}
		}
		if 0 < nextSx && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}
