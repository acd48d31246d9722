package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultPath is where packages install the policy.
const DefaultPath = "/etc/pullguard/policy.yaml"

// ErrInvalid is wrapped by every error that is the policy's fault (syntax,
// schema, permissions), as opposed to a failure to read it.
var ErrInvalid = errors.New("invalid policy")

// Problem is one thing wrong with a policy, where it was found.
type Problem struct {
	Pos Position
	Msg string
}

func (p Problem) String() string {
	switch {
	case p.Pos.File == "":
		return p.Msg
	case p.Pos.Line == 0:
		return p.Pos.File + ": " + p.Msg
	default:
		return fmt.Sprintf("%s:%d:%d: %s", p.Pos.File, p.Pos.Line, p.Pos.Column, p.Msg)
	}
}

// LoadError lists every problem found in a policy, so that an operator
// fixes them in one pass.
type LoadError struct {
	Problems []Problem
}

func (e *LoadError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (e *LoadError) Unwrap() error { return ErrInvalid }

// LoadOptions tune loading.
type LoadOptions struct {
	// InsecurePermissions accepts policy files that others could have
	// written. For development only: on a host, whoever can write the policy
	// decides what runs.
	InsecurePermissions bool
}

// DropInFiles lists the drop-ins that go with the policy at main:
// policy.d/*.yaml beside it, in lexical order. Hidden files (editors'
// swap files, Kubernetes' ..data links) are not policy.
func DropInFiles(main string) ([]string, error) {
	dir := filepath.Join(filepath.Dir(main), "policy.d")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading drop-in directory: %w", err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".yaml") {
			continue
		}
		files = append(files, filepath.Join(dir, name))
	}
	sort.Strings(files)
	return files, nil
}

// Load reads the policy at main and its drop-ins. Unless opts say
// otherwise, policy.d/ itself must be safe too, even when it holds no file
// to read: whoever can write it can take a drop-in away.
func Load(main string, opts LoadOptions) (*Policy, error) {
	dropIns, err := DropInFiles(main)
	if err != nil {
		return nil, err
	}
	files := append([]string{main}, dropIns...)
	if opts.InsecurePermissions {
		return loadFiles(files, opts, nil)
	}
	perms := newPermissionChecker()
	if p := perms.dir(filepath.Join(filepath.Dir(main), "policy.d")); p != nil {
		return nil, &LoadError{Problems: []Problem{*p}}
	}
	return loadFiles(files, opts, perms)
}

// LoadFiles reads the given files as one policy, in order. A missing file is
// an error: a policy that cannot be read never means "allow everything".
func LoadFiles(files []string, opts LoadOptions) (*Policy, error) {
	var perms *permissionChecker
	if !opts.InsecurePermissions {
		perms = newPermissionChecker()
	}
	return loadFiles(files, opts, perms)
}

// loadFiles reads files, checking their permissions with perms unless it
// is nil.
func loadFiles(files []string, opts LoadOptions, perms *permissionChecker) (*Policy, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no policy file given", ErrInvalid)
	}
	sources := make([]Source, 0, len(files))
	var problems []Problem
	for _, f := range files {
		data, err := readPolicyFile(f, perms)
		if err != nil {
			var le *LoadError
			if errors.As(err, &le) {
				problems = append(problems, le.Problems...)
				continue
			}
			return nil, err
		}
		sources = append(sources, Source{Name: f, Data: data})
	}
	if len(problems) > 0 {
		return nil, &LoadError{Problems: problems}
	}
	return parse(opts, perms, sources...)
}

func readPolicyFile(name string, perms *permissionChecker) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &LoadError{Problems: []Problem{{Pos: Position{File: name}, Msg: "policy file does not exist"}}}
		}
		return nil, fmt.Errorf("opening policy: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the name, so the checked file is the read one.
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("checking policy file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, &LoadError{Problems: []Problem{{Pos: Position{File: name}, Msg: "policy file is not a regular file"}}}
	}
	if perms != nil {
		if p := perms.file(name, st, "policy file"); p != nil {
			return nil, &LoadError{Problems: []Problem{*p}}
		}
	}
	data, err := readAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading policy %s: %w", name, err)
	}
	return data, nil
}

// maxPolicySize bounds a policy file; a generated allowlist of thousands of
// rules is a few hundred KiB.
const maxPolicySize = 16 << 20

func readAll(f *os.File) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, maxPolicySize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPolicySize {
		return nil, fmt.Errorf("file is more than %d bytes", maxPolicySize)
	}
	return data, nil
}

// Source is one policy file's name and content.
type Source struct {
	Name string
	Data []byte
}

// Parse builds a policy from file contents, in order. It checks everything
// and reports every problem it finds.
func Parse(sources ...Source) (*Policy, error) {
	return parse(LoadOptions{}, newPermissionChecker(), sources...)
}

// parse checks the files signed-by names with perms, unless it is nil.
func parse(opts LoadOptions, perms *permissionChecker, sources ...Source) (*Policy, error) {
	p := &Policy{Mode: ModeAudit, Default: DefaultDeny, Running: RunningKeep, LocalImages: LocalImagesDeny}
	l := &loader{policy: p, set: map[string]Position{}, opts: opts, perms: perms, patterns: map[*Rule]pattern{}, shared: &ruleMemory{}}
	h := sha256.New()
	for _, s := range sources {
		p.Files = append(p.Files, s.Name)
		fmt.Fprintf(h, "%s\x00%d\x00", s.Name, len(s.Data))
		h.Write(s.Data)
		l.file(s.Name, s.Data)
	}
	l.attachTrustedRoot()
	if len(l.problems) > 0 {
		return nil, &LoadError{Problems: l.problems}
	}
	for _, k := range l.keyData { // a new key is a new policy
		fmt.Fprintf(h, "%s\x00%d\x00", k.Name, len(k.Data))
		h.Write(k.Data)
	}
	p.Hash = hex.EncodeToString(h.Sum(nil))[:16]
	// The indexes only read the rules: the resemblance index, a third of a
	// large allowlist's load, is built on the other core meanwhile.
	names := make(chan *resemblanceIndex, 1)
	go func() { names <- newResemblanceIndex(p.Allow, l.patterns) }()
	p.allowIdx = buildIndex(p.Allow, l)
	p.pinsDigests = slices.ContainsFunc(p.Allow, func(r *Rule) bool { return len(r.Digests) > 0 })
	p.denyIdx = buildIndex(p.Deny, l)
	p.names = <-names
	p.cache = newRefCache(refCacheSize)
	return p, nil
}

type loader struct {
	policy   *Policy
	fileName string
	set      map[string]Position // top-level scalars set so far, across files
	problems []Problem
	patterns map[*Rule]pattern
	opts     LoadOptions
	perms    *permissionChecker
	keys     map[string]*Key // signed-by key files read so far, by path
	keyData  []Source
	shared   *ruleMemory
	// The trusted root (trustedroot.go), whether setting it failed, and
	// the signed-by lists with identities, which get it once all is read.
	root         *TrustedRoot
	rootFailed   bool
	identitySets []*KeySet
}

func (l *loader) errorf(n *yaml.Node, format string, args ...any) {
	pos := Position{File: l.fileName}
	if n != nil {
		pos.Line, pos.Column = n.Line, n.Column
	}
	l.problems = append(l.problems, Problem{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

var topLevelKeys = []string{"mode", "default", "running", "local-images", "trusted-root", "trusted-root-max-age", "allow", "deny"}

func (l *loader) file(name string, data []byte) {
	if l.fileInRuns(name, data) {
		return
	}
	l.fileName = name
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		l.yamlError(err)
		return
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return // an empty file adds nothing
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return
	}
	if root.Kind != yaml.MappingNode {
		l.errorf(root, "expected a mapping with the keys %s, got %s", strings.Join(topLevelKeys, ", "), describe(root))
		return
	}
	l.mapping(root, topLevelKeys, func(key string, k, v *yaml.Node) {
		switch key {
		case "mode":
			if s, ok := l.enum(v, key, "enforce", "audit"); ok && l.once(key, k) {
				l.policy.Mode = Mode(s)
			}
		case "default":
			if s, ok := l.enum(v, key, "deny", "allow"); ok && l.once(key, k) {
				l.policy.Default = Default(s)
				l.policy.DefaultSource = Position{File: name, Line: k.Line, Column: k.Column}
			}
		case "running":
			if s, ok := l.enum(v, key, "keep", "stop"); ok && l.once(key, k) {
				l.policy.Running = Running(s)
			}
		case "local-images":
			l.localImages(k, v)
		case "trusted-root":
			l.trustedRootKey(k, v)
		case "trusted-root-max-age":
			l.trustedRootMaxAge(k, v)
		case "allow":
			l.policy.Allow = append(l.policy.Allow, l.rules(v, Allow)...)
		case "deny":
			l.policy.Deny = append(l.policy.Deny, l.rules(v, Deny)...)
		}
	})
}

// yamlError turns the YAML library's error into problems with positions.
func (l *loader) yamlError(err error) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, m := range te.Errors {
			l.problems = append(l.problems, Problem{Pos: Position{File: l.fileName}, Msg: m})
		}
		return
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if n, err := fmt.Sscanf(msg, "line %d:", &line); n == 1 && err == nil {
		msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
		l.problems = append(l.problems, Problem{Pos: Position{File: l.fileName, Line: line, Column: 1}, Msg: "YAML syntax: " + msg})
		return
	}
	l.problems = append(l.problems, Problem{Pos: Position{File: l.fileName}, Msg: "YAML syntax: " + msg})
}

// once records a top-level setting and refuses a second one, naming both.
func (l *loader) once(key string, k *yaml.Node) bool {
	here := Position{File: l.fileName, Line: k.Line, Column: k.Column}
	if first, ok := l.set[key]; ok {
		l.errorf(k, "%s is set twice: first at %s:%d:%d; set it in one file only", key, first.File, first.Line, first.Column)
		return false
	}
	l.set[key] = here
	return true
}

// mapping walks a mapping node, refusing unknown and duplicate keys.
func (l *loader) mapping(n *yaml.Node, known []string, each func(key string, k, v *yaml.Node)) {
	// A rule has a handful of keys: looking back at them costs less than a
	// map for each of 100,000 rules. Only a long mapping gets one.
	var seen map[string]int
	if len(n.Content) > 32 {
		seen = make(map[string]int, len(n.Content)/2)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			l.errorf(k, "expected a key, got %s", describe(k))
			continue
		}
		key := k.Value
		if line, dup := firstKey(n.Content[:i], seen, key); dup {
			l.errorf(k, "duplicate key %q (first at line %d)", key, line)
			continue
		}
		if seen != nil {
			seen[key] = k.Line
		}
		if !contains(known, key) {
			l.errorf(k, "unknown key %q (expected one of: %s)", key, strings.Join(known, ", "))
			continue
		}
		each(key, k, v)
	}
}

// firstKey finds key among the keys before it (in seen, when there is a
// map), and the line of its first appearance.
func firstKey(before []*yaml.Node, seen map[string]int, key string) (line int, found bool) {
	if seen != nil {
		line, found = seen[key]
		return line, found
	}
	for j := 0; j+1 < len(before); j += 2 {
		if k := before[j]; k.Kind == yaml.ScalarNode && k.Value == key {
			return k.Line, true
		}
	}
	return 0, false
}

func (l *loader) enum(v *yaml.Node, key string, allowed ...string) (string, bool) {
	s, ok := l.str(v, key)
	if !ok {
		return "", false
	}
	if !contains(allowed, s) {
		l.errorf(v, "%s: expected %s, got %q", key, strings.Join(allowed, " or "), s)
		return "", false
	}
	return s, true
}

func (l *loader) str(v *yaml.Node, key string) (string, bool) {
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!str" && v.Tag != "!!timestamp") {
		l.errorf(v, "%s: expected a string, got %s", key, describe(v))
		return "", false
	}
	return v.Value, true
}

func (l *loader) strList(v *yaml.Node, key string) ([]string, bool) {
	if v.Kind != yaml.SequenceNode {
		l.errorf(v, "%s: expected a list of strings, got %s", key, describe(v))
		return nil, false
	}
	out := make([]string, 0, len(v.Content))
	ok := true
	for _, item := range v.Content {
		// Tags like 1.25 or 2 parse as numbers; take them as written.
		if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
			l.errorf(item, "%s: expected a string, got %s", key, describe(item))
			ok = false
			continue
		}
		out = append(out, item.Value)
	}
	return out, ok
}
