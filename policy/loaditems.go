package policy

import (
	"time"

	"go.yaml.in/yaml/v3"
)

// Even read in runs, the YAML library's tokenizer and tree were most of the
// time a 100,000-rule allowlist took to load (0.55 s of 1.1 s), and most of
// its garbage. Rules are almost always written in one plain shape:
//
//	  - image: registry.corp.example.com/team/app
//	    tags: ["1.*", stable]
//	    reason: PLAT-12, approved by platform security
//	    expires: 2030-01-31
//
// scanItems reads exactly that shape (one "key: scalar" or "key: [flow
// list]" a line, or a key followed by a block list of scalars) into the
// nodes the YAML library would have built, positions, tags and styles
// included, and the loader checks them as it checks any other node. Anything
// else (a multi-line or escaped scalar, an anchor, a value YAML would read
// as a number, a boolean or null, a non-ASCII byte, an unusual indentation)
// makes it give up, and the run goes through the YAML library as before, so
// that every file means what YAML says and every problem is reported as
// before. A fuzz test holds the two to the same trees.

// scanItems reads the block-sequence items of lines[first:last], which all
// start at column indent ("- " at lines[i][indent]), as the YAML library
// would read them. ok is false when it cannot be sure of that.
//
// The nodes are s's: the next call reuses them, so the caller must be done
// with them by then.
func (s *itemScanner) scanItems(lines [][]byte, first, last, indent int) (items []*yaml.Node, ok bool) {
	for _, ln := range lines[first:last] {
		if !plainASCII(ln) {
			return nil, false
		}
	}
	s.lines, s.last, s.used = lines, last, 0
	items = s.items[:0]
	defer func() { s.items = items[:0] }()
	for i := s.next(first); i < last; {
		ln := lines[i]
		if lead(ln) != indent || !isItemStartAt(ln, indent) {
			return nil, false
		}
		col := indent + 1
		for col < len(ln) && ln[col] == ' ' {
			col++
		}
		m := s.node()
		m.Kind, m.Tag, m.Line, m.Column = yaml.MappingNode, "!!map", i+1, col+1
		for {
			var ok bool
			if i, ok = s.keyValue(m, i, col); !ok {
				return nil, false
			}
			if i >= last || lead(lines[i]) != col || lines[i][col] == '-' {
				break
			}
		}
		items = append(items, m)
		if i < last && lead(lines[i]) != indent {
			return nil, false
		}
	}
	return items, true
}

// itemScanner keeps the nodes of one run and reuses them for the next: a
// run's nodes are garbage once its rules are built, and a 100,000-rule
// allowlist would otherwise allocate a hundred megabytes of them.
type itemScanner struct {
	lines [][]byte
	last  int
	slabs [][]yaml.Node // blocks of nodes, in use up to used
	used  int
	items []*yaml.Node
}

const slabNodes = 512

func (s *itemScanner) node() *yaml.Node {
	b, i := s.used/slabNodes, s.used%slabNodes
	if b == len(s.slabs) {
		s.slabs = append(s.slabs, make([]yaml.Node, slabNodes))
	}
	s.used++
	n := &s.slabs[b][i]
	content := n.Content[:0] // keep the children's array
	*n = yaml.Node{Content: content}
	return n
}

// next skips blank and comment-only lines from i.
func (s *itemScanner) next(i int) int {
	for i < s.last && isBlankOrComment(s.lines[i]) {
		i++
	}
	return i
}

// keyValue reads "key: value" at column col of line i into m, with a block
// list of scalars on the lines below when the value is empty. It returns
// the next line with content.
func (s *itemScanner) keyValue(m *yaml.Node, i, col int) (int, bool) {
	ln := s.lines[i]
	end := col
	for end < len(ln) && (isLetter(ln[end]) || end > col && (isDigit(ln[end]) || ln[end] == '-' || ln[end] == '_')) {
		end++
	}
	if end == col || end == len(ln) || ln[end] != ':' {
		return 0, false
	}
	if _, ok := plainTag(ln[col:end]); !ok {
		return 0, false // true:, null: and the like are not string keys
	}
	k := s.node()
	k.Kind, k.Tag, k.Value, k.Line, k.Column = yaml.ScalarNode, "!!str", keyName(ln[col:end]), i+1, col+1
	p := end + 1
	if p < len(ln) && ln[p] != ' ' {
		return 0, false // "key:value" is one scalar
	}
	for p < len(ln) && ln[p] == ' ' {
		p++
	}
	var v *yaml.Node
	if p == len(ln) || ln[p] == '#' {
		var ok bool
		if v, i, ok = s.blockList(i, col); !ok {
			return 0, false
		}
	} else {
		v = s.node()
		v.Line, v.Column = i+1, p+1
		var ok bool
		if ln[p] == '[' {
			p, ok = s.flowList(v, ln, p)
		} else {
			p, ok = scalar(v, ln, p, false)
		}
		if !ok || !restIsComment(ln[p:]) {
			return 0, false
		}
		i = s.next(i + 1)
	}
	m.Content = append(m.Content, k, v)
	return i, true
}

// blockList reads the list of scalars below the key on line i
// ("tags:\n  - a\n  - b"), which YAML allows at the key's own column.
func (s *itemScanner) blockList(i, keyCol int) (*yaml.Node, int, bool) {
	i = s.next(i + 1)
	if i >= s.last {
		return nil, 0, false
	}
	ind := lead(s.lines[i])
	if ind < keyCol || !isItemStartAt(s.lines[i], ind) {
		return nil, 0, false // an empty value: null, left to the YAML library
	}
	seq := s.node()
	seq.Kind, seq.Tag, seq.Line, seq.Column = yaml.SequenceNode, "!!seq", i+1, ind+1
	for i < s.last && lead(s.lines[i]) == ind && isItemStartAt(s.lines[i], ind) {
		ln := s.lines[i]
		p := ind + 1
		for p < len(ln) && ln[p] == ' ' {
			p++
		}
		if p == ind+1 || p == len(ln) {
			return nil, 0, false
		}
		v := s.node()
		v.Line, v.Column = i+1, p+1
		p, ok := scalar(v, ln, p, false)
		if !ok || !restIsComment(ln[p:]) {
			return nil, 0, false
		}
		seq.Content = append(seq.Content, v)
		i = s.next(i + 1)
	}
	if i < s.last && lead(s.lines[i]) > keyCol {
		return nil, 0, false // more of an entry, or an entry at another column
	}
	return seq, i, true
}

// flowList reads "[a, "b", 'c']" starting at ln[p] into v.
func (s *itemScanner) flowList(v *yaml.Node, ln []byte, p int) (int, bool) {
	v.Kind, v.Tag, v.Style = yaml.SequenceNode, "!!seq", yaml.FlowStyle
	p++
	skip := func() {
		for p < len(ln) && ln[p] == ' ' {
			p++
		}
	}
	skip()
	if p < len(ln) && ln[p] == ']' {
		return p + 1, true
	}
	for p < len(ln) {
		item := s.node()
		item.Line, item.Column = v.Line, p+1
		var ok bool
		if p, ok = scalar(item, ln, p, true); !ok {
			return 0, false
		}
		v.Content = append(v.Content, item)
		skip()
		if p == len(ln) {
			return 0, false
		}
		switch ln[p] {
		case ']':
			return p + 1, true
		case ',':
			p++
			skip()
		default:
			return 0, false
		}
	}
	return 0, false
}

// scalar reads a quoted scalar without escapes, or a plain one that YAML
// resolves to a string (or, written as a date, a timestamp), starting at
// ln[p], into n. inFlow: inside [...], where , ] end a plain scalar.
func scalar(n *yaml.Node, ln []byte, p int, inFlow bool) (int, bool) {
	n.Kind = yaml.ScalarNode
	switch q := ln[p]; q {
	case '"', '\'':
		end := p + 1
		for end < len(ln) && ln[end] != q && ln[end] != '\\' {
			end++
		}
		if end == len(ln) || ln[end] != q || end+1 < len(ln) && ln[end+1] == q {
			return 0, false // unterminated, escaped, or '' inside
		}
		n.Tag, n.Value = "!!str", string(ln[p+1:end])
		n.Style = yaml.DoubleQuotedStyle
		if q == '\'' {
			n.Style = yaml.SingleQuotedStyle
		}
		return end + 1, true
	}
	end := p
	for end < len(ln) {
		c := ln[end]
		if c == ' ' && end+1 < len(ln) && ln[end+1] == '#' {
			break // a comment
		}
		if c == ':' && (end+1 == len(ln) || ln[end+1] == ' ' || inFlow && !isLetter(ln[end+1]) && !isDigit(ln[end+1])) {
			return 0, false // a mapping
		}
		if inFlow && (c == ',' || c == ']') {
			break
		}
		if inFlow && (c == '[' || c == '{' || c == '}' || c == '?' || c == '#' || c == '"' || c == '\'') {
			return 0, false
		}
		end++
	}
	stop := end
	for end > p && ln[end-1] == ' ' {
		end--
	}
	if end == p {
		return 0, false
	}
	v := ln[p:end]
	tag, ok := plainTag(v)
	if !ok {
		return 0, false
	}
	n.Tag, n.Value = tag, string(v)
	return stop, true
}

// plainTag is the tag YAML resolves a plain scalar to, for the scalars it
// is sure of: a name starting with a letter (not true, false or null), one
// starting with a digit that holds a / (an ECR host), and a date.
func plainTag(v []byte) (string, bool) {
	switch c := v[0]; {
	case isLetter(c):
		switch string(v) {
		case "true", "True", "TRUE", "false", "False", "FALSE", "null", "Null", "NULL":
			return "", false
		}
		return "!!str", true
	case isDigit(c):
		if isDate(v) {
			return "!!timestamp", true
		}
		for _, c := range v {
			if c == '/' {
				return "!!str", true
			}
		}
	case c == '/':
		return "!!str", true
	}
	return "", false
}

// isDate: YYYY-MM-DD, a valid date, which YAML reads as a timestamp.
func isDate(v []byte) bool {
	if len(v) != 10 || v[4] != '-' || v[7] != '-' {
		return false
	}
	for i, c := range v {
		if i != 4 && i != 7 && !isDigit(c) {
			return false
		}
	}
	_, err := time.Parse(time.DateOnly, string(v))
	return err == nil
}

// keyName returns the rule keys without allocating.
func keyName(b []byte) string {
	for _, k := range ruleKeys {
		if string(b) == k {
			return k
		}
	}
	return string(b)
}

func restIsComment(rest []byte) bool {
	for i, c := range rest {
		if c == '#' {
			return i > 0
		}
		if c != ' ' {
			return false
		}
	}
	return true
}

// plainASCII: printable ASCII only, so that YAML's columns (characters)
// are byte offsets and no character has a meaning this reader ignores.
func plainASCII(ln []byte) bool {
	for _, c := range ln {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func isItemStartAt(ln []byte, ind int) bool {
	return ind < len(ln) && ln[ind] == '-' && (ind+1 == len(ln) || ln[ind+1] == ' ')
}

func lead(ln []byte) int {
	n := 0
	for n < len(ln) && ln[n] == ' ' {
		n++
	}
	return n
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
