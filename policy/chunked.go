package policy

import (
	"bytes"

	"go.yaml.in/yaml/v3"
)

// A large organization's allowlist lists every approved repository: 100,000
// rules, 8 MB. The YAML library builds a tree of the whole document before
// anything reads it, a dozen times the file's size, and that tree, not the
// policy, made the peak of loading. So a large file written the usual way
// (top-level keys at column 0, the allow and deny lists as block sequences)
// is read a few thousand rules at a time: the document without the lists'
// items, then each run of items as a document of its own, with the line
// numbers of the file. Anything this cannot read exactly as the whole
// document would be read (an anchor used across runs, a directive, a
// second document, any problem at all) sends the file through the ordinary
// path instead, which then reports the problems.

// chunkedMinSize is the size from which a file is read in runs: below it
// the tree is small and the ordinary path is as good.
var chunkedMinSize = 1 << 20

// chunkItems is how many list items one run holds.
var chunkItems = 2000

// blockList is a top-level allow: or deny: whose value is a block sequence
// on the following lines.
type blockList struct {
	kind       RuleKind
	itemPrefix []byte
	items      []int // first line of each item
	end        int   // the line after the list
}

// fileInRuns reads a large file in runs of list items into l. It reports
// false, having changed nothing, when the file must take the ordinary path.
func (l *loader) fileInRuns(name string, data []byte) bool {
	if len(data) < chunkedMinSize || bytes.HasPrefix(data, []byte("---")) || bytes.HasPrefix(data, []byte("%")) ||
		bytes.Contains(data, []byte("\n---")) || bytes.Contains(data, []byte("\n...")) || bytes.Contains(data, []byte("\n%")) ||
		bytes.IndexByte(data, '\r') >= 0 || bytes.IndexByte(data, '\t') >= 0 {
		return false
	}
	lines := splitLines(data)
	lists, ok := findBlockLists(lines)
	if !ok || len(lists) == 0 {
		return false
	}
	if len(l.patterns) == 0 { // one map of the right size, not a dozen growing ones
		n := 0
		for _, bl := range lists {
			n += len(bl.items)
		}
		l.patterns = make(map[*Rule]pattern, n)
	}
	sub := &loader{policy: &Policy{}, set: map[string]Position{}, patterns: l.patterns, shared: l.shared}
	// The document without the lists' items: the same lines, emptied.
	skeleton := make([]byte, 0, 4096)
	emptied := make([]bool, len(lines))
	for _, bl := range lists {
		for i := bl.items[0]; i < bl.end; i++ {
			emptied[i] = true
		}
	}
	for i, ln := range lines {
		if !emptied[i] {
			skeleton = append(skeleton, ln...)
		}
		skeleton = append(skeleton, '\n')
	}
	sub.file(name, skeleton)
	if len(sub.problems) > 0 {
		return false
	}
	var scan itemScanner
	for _, bl := range lists {
		for c := 0; c < len(bl.items); c += chunkItems {
			first := bl.items[c]
			last := bl.end
			if c+chunkItems < len(bl.items) {
				last = bl.items[c+chunkItems]
			}
			want := min(chunkItems, len(bl.items)-c)
			list, ok := runItems(&scan, lines, first, last, len(bl.itemPrefix)-1, want)
			if !ok {
				return false // not the items this run was cut at: read the whole file instead
			}
			sub.fileName = name
			rules := sub.rules(list, bl.kind)
			if len(sub.problems) > 0 {
				return false
			}
			if bl.kind == Allow {
				sub.policy.Allow = append(sub.policy.Allow, rules...)
			} else {
				sub.policy.Deny = append(sub.policy.Deny, rules...)
			}
		}
	}
	// Settings made in this file join those of the files before it; one
	// made twice goes the ordinary way, which reports it.
	for key := range sub.set {
		if _, twice := l.set[key]; twice {
			return false
		}
	}
	for key, pos := range sub.set {
		l.set[key] = pos
		switch key {
		case "mode":
			l.policy.Mode = sub.policy.Mode
		case "default":
			l.policy.Default, l.policy.DefaultSource = sub.policy.Default, sub.policy.DefaultSource
		case "running":
			l.policy.Running = sub.policy.Running
		}
	}
	l.policy.Allow = append(l.policy.Allow, sub.policy.Allow...)
	l.policy.Deny = append(l.policy.Deny, sub.policy.Deny...)
	return true
}

// findBlockLists finds the top-level allow: and deny: keys whose value is
// a block sequence starting on the next line, and where each item starts.
// ok is false for a layout it does not recognise.
func findBlockLists(lines [][]byte) (lists []blockList, ok bool) {
	for i := 0; i < len(lines); i++ {
		ln := lines[i]
		var kind RuleKind
		switch {
		case keyLine(ln, "allow"):
			kind = Allow
		case keyLine(ln, "deny"):
			kind = Deny
		default:
			continue
		}
		j := i + 1
		for j < len(lines) && isBlankOrComment(lines[j]) {
			j++
		}
		if j == len(lines) {
			continue
		}
		indent := 0
		for indent < len(lines[j]) && lines[j][indent] == ' ' {
			indent++
		}
		bl := blockList{kind: kind, itemPrefix: append(bytes.Repeat([]byte(" "), indent), '-')}
		if !isItemStart(lines[j], bl.itemPrefix) {
			continue // not a block sequence: leave it to the skeleton
		}
		k := j
		for ; k < len(lines); k++ {
			ln := lines[k]
			if isBlankOrComment(ln) {
				continue
			}
			if isItemStart(ln, bl.itemPrefix) {
				bl.items = append(bl.items, k)
				continue
			}
			lead := 0
			for lead < len(ln) && ln[lead] == ' ' {
				lead++
			}
			if lead > indent {
				continue // inside an item
			}
			if lead != 0 {
				return nil, false
			}
			break // the next top-level key
		}
		bl.end = k
		lists = append(lists, bl)
		i = k - 1
	}
	return lists, true
}

// keyLine: "key:" at column 0, then nothing but spaces or a comment.
func keyLine(ln []byte, key string) bool {
	if !bytes.HasPrefix(ln, []byte(key+":")) {
		return false
	}
	rest := bytes.TrimLeft(ln[len(key)+1:], " ")
	return len(rest) == 0 || rest[0] == '#'
}

func isItemStart(ln, prefix []byte) bool {
	return bytes.HasPrefix(ln, prefix) && (len(ln) == len(prefix) || ln[len(prefix)] == ' ')
}

func isBlankOrComment(ln []byte) bool {
	t := bytes.TrimLeft(ln, " ")
	return len(t) == 0 || t[0] == '#'
}

func splitLines(data []byte) [][]byte {
	lines := make([][]byte, 0, bytes.Count(data, []byte("\n"))+1)
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			lines = append(lines, data)
			break
		}
		lines = append(lines, data[:i])
		data = data[i+1:]
	}
	return lines
}

func lineSpan(lines [][]byte, from, to int) int {
	n := 0
	for i := from; i < to; i++ {
		n += len(lines[i]) + 1
	}
	return n
}

// shiftLines moves every node of a tree down by n lines.
func shiftLines(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shiftLines(c, by)
	}
}

// runItems reads the want items of lines[first:last] as a block sequence,
// with the file's line numbers: by scanItems when it can, otherwise by the
// YAML library as the document "list:" followed by those lines. ok is
// false when they are not exactly want items.
func runItems(s *itemScanner, lines [][]byte, first, last, indent, want int) (list *yaml.Node, ok bool) {
	if items, ok := s.scanItems(lines, first, last, indent); ok && len(items) == want {
		return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: items}, true
	}
	doc := make([]byte, 0, 16+lineSpan(lines, first, last))
	doc = append(doc, "list:\n"...)
	for i := first; i < last; i++ {
		doc = append(doc, lines[i]...)
		doc = append(doc, '\n')
	}
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil || len(root.Content) != 1 {
		return nil, false
	}
	m := root.Content[0]
	if m.Kind != yaml.MappingNode || len(m.Content) != 2 || m.Content[1].Kind != yaml.SequenceNode ||
		len(m.Content[1].Content) != want {
		return nil, false
	}
	shiftLines(m.Content[1], first-1) // "list:" stood on line 1 instead of the item's line
	return m.Content[1], true
}
