package lint

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// yamlDocuments decodes every document of a YAML stream, keeping the nodes
// for their line numbers.
func yamlDocuments(data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, yamlError(err)
		}
		if len(doc.Content) > 0 {
			if size := expandedSize(doc.Content[0], map[*yaml.Node]int{}); size > maxExpandedNodes {
				return nil, &ParseError{Line: doc.Line, Err: fmt.Errorf("the document expands to over %d nodes through its aliases", maxExpandedNodes)}
			}
			docs = append(docs, doc.Content[0])
		}
	}
}

// maxExpandedNodes bounds a document's size with its aliases expanded, so
// that a few lines of nested aliases (a "billion laughs") cannot keep CI
// busy: the walks below follow aliases.
const maxExpandedNodes = 1 << 20

// expandedSize counts the nodes of n with aliases expanded, each distinct
// node computed once; an alias that contains itself counts as too large.
func expandedSize(n *yaml.Node, memo map[*yaml.Node]int) int {
	if size, ok := memo[n]; ok {
		if size < 0 {
			return maxExpandedNodes + 1 // a cycle
		}
		return size
	}
	memo[n] = -1
	size := 1
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		size += expandedSize(n.Alias, memo)
	}
	for _, c := range n.Content {
		if size > maxExpandedNodes {
			break
		}
		size += expandedSize(c, memo)
	}
	memo[n] = size
	return size
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError turns "yaml: line 3: ..." into a ParseError at line 3.
func yamlError(err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &ParseError{Line: n, Err: errors.New(msg[len(m[0]):])}
	}
	return &ParseError{Err: err}
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// lookup finds key in a mapping, following merge keys (<<: *base) as YAML
// 1.1 does, so an image inherited from an anchor is found. It returns the
// key node (for its line) and the value.
func lookup(m *yaml.Node, key string) (k, v *yaml.Node) {
	return lookupDepth(resolve(m), key, 0)
}

func lookupDepth(m *yaml.Node, key string, depth int) (k, v *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode || depth > 20 {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key && m.Content[i].Tag != "!!merge" {
			return m.Content[i], resolve(m.Content[i+1])
		}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Tag != "!!merge" {
			continue
		}
		from := resolve(m.Content[i+1])
		bases := []*yaml.Node{from}
		if from != nil && from.Kind == yaml.SequenceNode {
			bases = from.Content
		}
		for _, b := range bases {
			if k, v := lookupDepth(resolve(b), key, depth+1); k != nil {
				return k, v
			}
		}
	}
	return nil, nil
}

// scalar is the string value of a node, and whether it is a scalar.
func scalar(n *yaml.Node) (string, bool) {
	if n == nil || n.Kind != yaml.ScalarNode {
		return "", false
	}
	return n.Value, true
}

// pairs lists the key/value pairs of a mapping.
func pairs(m *yaml.Node) [][2]*yaml.Node {
	m = resolve(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	out := make([][2]*yaml.Node, 0, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		out = append(out, [2]*yaml.Node{m.Content[i], resolve(m.Content[i+1])})
	}
	return out
}

// imageAt reads an image: value. A value that is not a string is a parse
// error: whatever consumes the file would reject it too.
func imageAt(k, v *yaml.Node, source string) (imageUse, error) {
	s, ok := scalar(v)
	if !ok || (v.Tag != "!!str" && v.Tag != "") {
		return imageUse{}, &ParseError{Line: k.Line, Err: errors.New(source + ": image is not a string")}
	}
	return imageUse{Line: k.Line, Source: source, Input: s, Ref: s}, nil
}
