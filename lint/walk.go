package lint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/pullguard/pullguard/policy"
)

// Input is one file to lint.
type Input struct {
	Path string
	Kind Kind
	// Probe marks a YAML file found by a directory walk that only its
	// content can show to be a Kubernetes manifest: one that does not parse,
	// or holds no Kubernetes object, is skipped rather than reported.
	Probe bool
	// Refused says why a link the walk found is not read (followLink); it
	// is then a finding of its own, naming Target, the link as written.
	Refused, Target string
}

// skippedDirs are not walked: version control and vendored trees.
var skippedDirs = map[string]bool{".git": true, "vendor": true, "node_modules": true}

// KindOf tells an input's kind from its file name; "" when the name says
// nothing. Any YAML file that is not a Compose file may be a Kubernetes
// manifest, which only its content can tell.
func KindOf(name string) Kind {
	base := filepath.Base(name)
	switch {
	case strings.HasSuffix(base, ".dockerignore"):
		return "" // Dockerfile.dockerignore is BuildKit's ignore file
	case base == "Dockerfile", base == "Containerfile",
		strings.HasSuffix(base, ".Dockerfile"), strings.HasPrefix(base, "Dockerfile."):
		return Dockerfile
	case matches(base, "compose*.y*ml"), matches(base, "docker-compose*.y*ml"):
		return Compose
	case strings.HasSuffix(base, ".yaml"), strings.HasSuffix(base, ".yml"):
		return Kubernetes
	}
	return ""
}

func matches(name, pattern string) bool {
	ok, _ := filepath.Match(pattern, name)
	return ok
}

// Collect expands the paths given on the command line into the files to
// lint. A file named explicitly is linted as forced (when not "") or as its
// name says, and is an error if its name says nothing; a directory is
// walked recursively and yields only the files its names recognise, links
// among them (followLink). It stops with ctx's error when ctx is cancelled.
func Collect(ctx context.Context, paths []string, forced Kind) ([]Input, error) {
	var inputs []Input
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			if inputs, err = walkTree(ctx, p, inputs); err != nil {
				return nil, err
			}
			continue
		}
		kind := forced
		if kind == "" {
			kind = KindOf(p)
		}
		if kind == "" {
			return nil, fmt.Errorf("%s: cannot tell from its name whether it is a Dockerfile, a Compose file or a Kubernetes manifest; use --type", p)
		}
		inputs = append(inputs, Input{Path: p, Kind: kind})
	}
	return inputs, nil
}

// walkTree appends the inputs under the directory root. The tree is what
// root resolves to, so that a root given as a link is walked; files are
// named under root as given.
func walkTree(ctx context.Context, root string, inputs []Input) ([]Input, error) {
	tree, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	err = filepath.WalkDir(tree, func(real string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(tree, real)
		if err != nil {
			return err
		}
		path := filepath.Join(root, rel)
		switch {
		case d.IsDir():
			if real != tree && skippedDirs[d.Name()] {
				return filepath.SkipDir
			}
		case d.Type()&fs.ModeSymlink != 0:
			if in, ok := followLink(tree, real, path); ok {
				inputs = append(inputs, in)
			}
		case d.Type().IsRegular():
			if kind := KindOf(path); kind != "" {
				inputs = append(inputs, Input{Path: path, Kind: kind, Probe: kind == Kubernetes})
			}
		}
		return nil
	})
	return inputs, err
}

// followLink judges a link the walk found at real (path as reported).
// BuildKit and the classic builder read a Dockerfile or Compose file
// through a link, so a link to a file inside the tree is linted under the
// link's name. A link that leaves the tree — absolute, up past its root,
// or through a linked directory — holds what the machine running the build
// has there, which lint cannot see: it is refused, and so is one that
// loops or leads nowhere. A link to a directory is not followed: inside
// the tree the walk reaches the directory itself; outside it, it is
// refused, since a build can be pointed at a Dockerfile in it. Links with
// other names, and links named as skipped directories, are ignored.
func followLink(tree, real, path string) (Input, bool) {
	if skippedDirs[filepath.Base(real)] {
		return Input{}, false
	}
	kind := KindOf(path)
	target, _ := os.Readlink(real)
	refuse := func(format string, args ...any) (Input, bool) {
		return Input{Path: path, Kind: kind, Target: target, Refused: fmt.Sprintf(format, args...)}, true
	}
	st, err := os.Stat(real)
	switch {
	case err != nil && kind == "":
		return Input{}, false // names nothing lint reads
	case errors.Is(err, syscall.ELOOP):
		return refuse("the link loops: it never reaches a file, and lint does not read it")
	case errors.Is(err, fs.ErrNotExist):
		return refuse("the link leads to nothing: %s does not exist", target)
	case err != nil:
		return refuse("the link cannot be followed: %v", err)
	case !st.IsDir() && kind == "":
		return Input{}, false
	}
	resolved, err := filepath.EvalSymlinks(real)
	if err != nil {
		return refuse("the link cannot be followed: %v", err)
	}
	if rel, err := filepath.Rel(tree, resolved); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		what := "file"
		if st.IsDir() {
			what = "directory"
		}
		return refuse("the link leads out of the tree lint walks, to the %s %s: what it holds where the build runs is not known here (name it to lint it)", what, resolved)
	}
	switch {
	case st.IsDir():
		return Input{}, false
	case !st.Mode().IsRegular():
		return refuse("the link leads to %s, which is not a regular file", resolved)
	}
	return Input{Path: path, Kind: kind, Probe: kind == Kubernetes}, true
}

// Skipped is a YAML file found by a directory walk that does not parse (a
// Helm template, say): it is not linted, and the caller should say so, but
// it is not an error, since nothing shows it is a manifest.
type Skipped struct {
	File string
	Err  error
}

func (s *Skipped) Error() string {
	var pe *ParseError
	if errors.As(s.Err, &pe) && pe.Line > 0 {
		return fmt.Sprintf("%s:%d: skipped, not YAML lint can read: %v", s.File, pe.Line, pe.Err)
	}
	return fmt.Sprintf("%s: skipped, not YAML lint can read: %v", s.File, s.Err)
}

// LintInput reads and lints one collected file. A probed YAML file that
// holds no Kubernetes object yields nothing; one that does not parse yields
// a *Skipped. A refused link is one unresolved finding.
func (l *Linter) LintInput(ctx context.Context, in Input) ([]Finding, error) {
	if in.Refused != "" {
		return []Finding{{File: in.Path, Source: "symlink", Input: in.Target, Unresolved: true,
			Decision: policy.Decision{Input: in.Target, Reason: in.Refused}}}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(in.Path)
	if err != nil {
		return nil, err
	}
	data, err := readInput(f)
	f.Close()
	if errors.Is(err, errTooLarge) {
		return nil, &ParseError{File: in.Path, Err: err}
	} else if err != nil {
		return nil, err
	}
	if in.Probe {
		uses, objects, err := kubernetesImages(data)
		if err != nil {
			return nil, &Skipped{File: in.Path, Err: err}
		}
		if objects == 0 {
			return nil, nil
		}
		return l.judge(in.Path, uses), nil
	}
	return l.Lint(ctx, in.Path, in.Kind, data)
}

// maxInputSize bounds what lint reads of one input. The largest real
// manifests (CRD bundles, rendered charts) are a few MiB; a repository's
// 10 GB sparse file named Dockerfile must not become 10 GB of memory.
const maxInputSize = 64 << 20

// readInput reads a file as ReadInput does, refusing a regular file that
// is too large before reading any of it.
func readInput(f *os.File) ([]byte, error) {
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > maxInputSize {
		return nil, errTooLarge
	}
	return ReadInput(f)
}

var errTooLarge = fmt.Errorf("over %d MiB, more than lint reads of one file", maxInputSize>>20)

// ReadInput reads an input whole, refusing one larger than any real
// Dockerfile, Compose file or manifest.
func ReadInput(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxInputSize+1))
	if err == nil && len(data) > maxInputSize {
		return nil, errTooLarge
	}
	return data, err
}

// LintAll lints the inputs on every CPU and returns the findings in input
// order, with every error (each names its file). When ctx is cancelled it
// returns at once with ctx's error alone: inputs still being read (a pipe
// that never ends, a huge file) are abandoned, since the caller is
// stopping.
func (l *Linter) LintAll(ctx context.Context, inputs []Input) ([]Finding, []error) {
	type result struct {
		findings []Finding
		err      error
	}
	results := make([]result, len(inputs))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(runtime.GOMAXPROCS(0), len(inputs)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fs, err := l.LintInput(ctx, inputs[i])
				results[i] = result{fs, err}
			}
		}()
	}
	go func() {
		defer close(next)
		for i := range inputs {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	if err := ctx.Err(); err != nil {
		return nil, []error{err}
	}
	var (
		findings []Finding
		errs     []error
	)
	for _, r := range results {
		findings = append(findings, r.findings...)
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	return findings, errs
}
