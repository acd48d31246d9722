package policy

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"go.yaml.in/yaml/v3"
)

// This file reads one rule: its keys, its pattern, its tag globs and
// expiry, and the memory a large allowlist's rules are kept in.

// ruleMemory is where a policy's rules are kept. A 100,000-rule allowlist
// is held by the daemon for as long as it is in force, so its rules are
// allocated in blocks, not one by one among the loading's garbage, and
// what thousands of rules write alike (tags: ["1.*", "2.*"], expires:
// 2030-01-31) is kept once: rules are never changed after loading.
type ruleMemory struct {
	block   []Rule
	next    int // block size: doubling, so that a small policy wastes little
	tags    map[string][]string
	expires map[string]*time.Time
	key     []byte
}

func (m *ruleMemory) newRule() *Rule {
	if len(m.block) == 0 {
		m.next = min(max(2*m.next, 8), 1024)
		m.block = make([]Rule, m.next)
	}
	r := &m.block[0]
	m.block = m.block[1:]
	return r
}

// tagList returns an equal list kept before, or keeps this one.
func (m *ruleMemory) tagList(tags []string) []string {
	m.key = m.key[:0]
	for _, t := range tags {
		m.key = append(append(m.key, t...), 0)
	}
	if kept, ok := m.tags[string(m.key)]; ok {
		return kept
	}
	if m.tags == nil {
		m.tags = map[string][]string{}
	}
	m.tags[string(m.key)] = tags
	return tags
}

// expiry parses s, or returns the instant parsed from the same text before.
func (m *ruleMemory) expiry(s string) (*time.Time, error) {
	if t, ok := m.expires[s]; ok {
		return t, nil
	}
	t, err := parseExpiry(s)
	if err != nil {
		return nil, err
	}
	if m.expires == nil {
		m.expires = map[string]*time.Time{}
	}
	m.expires[s] = &t
	return &t, nil
}

var ruleKeys = []string{"image", "tags", "digests", "expires", "reason", "signed-by", "signature-repository", "attestations"}

func (l *loader) rules(v *yaml.Node, kind RuleKind) []*Rule {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		l.errorf(v, "%s: expected a list of rules, got %s", kind, describe(v))
		return nil
	}
	var out []*Rule
	for _, item := range v.Content {
		if r := l.rule(item, kind); r != nil {
			out = append(out, r)
		}
	}
	return out
}

func (l *loader) rule(n *yaml.Node, kind RuleKind) *Rule {
	if n.Kind != yaml.MappingNode {
		l.errorf(n, "%s rule: expected a mapping with image: and optional %s, got %s", kind, strings.Join(ruleKeys[1:], ", "), describe(n))
		return nil
	}
	before := len(l.problems)
	r := l.shared.newRule()
	r.Kind, r.Source = kind, Position{File: l.fileName, Line: n.Line, Column: n.Column}
	var pat pattern
	hasImage := false
	var sigRepo string
	var sigRepoNode *yaml.Node
	l.mapping(n, ruleKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "image":
			hasImage = true
			s, ok := l.str(v, key)
			if !ok {
				return
			}
			if s == "" {
				l.errorf(v, "image: expected an image pattern, got an empty string")
				return
			}
			p, err := parsePattern(s)
			if err != nil {
				l.errorf(v, "image: %v", err)
				return
			}
			r.Image, pat = s, p
		case "tags":
			tags, ok := l.strList(v, key)
			if !ok {
				return
			}
			for i, t := range tags {
				if err := checkTagGlob(t); err != nil {
					l.errorf(v.Content[i], "tags: %v", err)
				}
			}
			r.Tags = l.shared.tagList(tags)
		case "digests":
			ds, ok := l.strList(v, key)
			if !ok {
				return
			}
			for i, d := range ds {
				if _, err := digest.Parse(d); err != nil {
					l.errorf(v.Content[i], "digests: %q is not a digest like sha256:<64 hex digits>: %v", d, err)
				}
			}
			r.Digests = ds
		case "expires":
			s, ok := l.str(v, key)
			if !ok {
				return
			}
			t, err := l.shared.expiry(s)
			if err != nil {
				l.errorf(v, "expires: %v", err)
				return
			}
			r.Expires = t
		case "reason":
			if s, ok := l.str(v, key); ok {
				r.Reason = s
			}
		case "signed-by":
			r.SignedBy = l.signedBy(v, kind)
		case "signature-repository":
			sigRepo, sigRepoNode = l.signatureRepository(v), v
		case "attestations":
			r.Attestations = l.attestations(v, kind)
		}
	})
	if sigRepoNode != nil {
		switch {
		case r.SignedBy != nil:
			r.SignedBy.Repository = sigRepo
			r.SignedBy.setID()
		case len(l.problems) == before:
			l.errorf(sigRepoNode, "signature-repository: only a rule with signed-by has signatures to look up")
		}
	}
	if !hasImage {
		l.errorf(n, "%s rule: image: is required", kind)
	}
	if len(l.problems) > before {
		return nil
	}
	if writtenAs(pat, r.Image) {
		r.Pattern = r.Image // one copy for 100,000 rules written in normal form
	} else {
		r.Pattern = pat.String()
	}
	l.patterns[r] = pat
	return r
}

// writtenAs reports whether s is p.String(), without building that.
func writtenAs(p pattern, s string) bool {
	first, segs := p.host, p.segments
	if p.anyHost {
		first, segs = "**", segs[1:]
	} else if len(segs) == 0 {
		return s == p.String()
	}
	rest, ok := strings.CutPrefix(s, first)
	for _, seg := range segs {
		if !ok || !strings.HasPrefix(rest, "/") {
			return false
		}
		rest, ok = strings.CutPrefix(rest[1:], seg)
	}
	return ok && rest == ""
}

func parseExpiry(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a date (2027-01-31) or an RFC 3339 time (2027-01-31T18:00:00Z)", s)
}

// checkTagGlob accepts path.Match globs made of characters a tag may hold.
func checkTagGlob(g string) error {
	if g == "" {
		return errors.New("empty tag glob")
	}
	if len(g) > 128 {
		return fmt.Errorf("tag glob %q is longer than 128 characters", g)
	}
	for _, c := range g {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.ContainsRune("_.-*?[]^!", c)
		if !ok {
			return fmt.Errorf("tag glob %q: %q cannot appear in a tag", g, c)
		}
	}
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("tag glob %q: %v", g, err)
	}
	return nil
}

func buildIndex(rules []*Rule, l *loader) *index {
	ix := newIndex()
	for i, r := range rules {
		ix.add(l.patterns[r], i)
	}
	return ix
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing"
		case "!!str":
			return fmt.Sprintf("%q", n.Value)
		default:
			return fmt.Sprintf("%s %s", strings.TrimPrefix(n.Tag, "!!"), n.Value)
		}
	}
	return "something else"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func summarize(r *Rule) string {
	var b strings.Builder
	b.WriteString(string(r.Kind))
	b.WriteString(" rule ")
	b.WriteString(r.Pattern)
	if len(r.Tags) > 0 {
		fmt.Fprintf(&b, " tags [%s]", strings.Join(r.Tags, " "))
	}
	if len(r.Digests) > 0 {
		fmt.Fprintf(&b, " digests [%s]", strings.Join(r.Digests, " "))
	}
	if r.Expires != nil {
		fmt.Fprintf(&b, " until %s", formatExpiry(*r.Expires))
	}
	if r.Reason != "" {
		fmt.Fprintf(&b, " (%s)", r.Reason)
	}
	if r.SignedBy != nil {
		fmt.Fprintf(&b, " signed-by [%s]", r.SignedBy.Describe())
		if r.SignedBy.Repository != "" {
			fmt.Fprintf(&b, " signature-repository %s", r.SignedBy.Repository)
		}
	}
	if r.Attestations != nil {
		types := make([]string, len(r.Attestations))
		for i, q := range r.Attestations {
			types[i] = q.Type
		}
		fmt.Fprintf(&b, " attestations [%s]", strings.Join(types, " "))
	}
	return b.String()
}

func formatExpiry(t time.Time) string {
	if t.Equal(t.Truncate(24*time.Hour)) && t.Location() == time.UTC {
		return t.Format(time.DateOnly)
	}
	return t.Format(time.RFC3339)
}
