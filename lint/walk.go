package lint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// Input is one file to lint.
type Input struct {
	Path string
	Kind Kind
	// Probe marks a YAML file found by a directory walk that only its
	// content can show to be a Kubernetes manifest: one that does not parse,
	// or holds no Kubernetes object, is skipped rather than reported.
	Probe bool
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
// walked recursively and yields only the files its names recognise.
func Collect(paths []string, forced Kind) ([]Input, error) {
	var inputs []Input
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			kind := forced
			if kind == "" {
				kind = KindOf(p)
			}
			if kind == "" {
				return nil, fmt.Errorf("%s: cannot tell from its name whether it is a Dockerfile, a Compose file or a Kubernetes manifest; use --type", p)
			}
			inputs = append(inputs, Input{Path: p, Kind: kind})
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != p && skippedDirs[d.Name()] {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			if kind := KindOf(path); kind != "" {
				inputs = append(inputs, Input{Path: path, Kind: kind, Probe: kind == Kubernetes})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return inputs, nil
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
// a *Skipped.
func (l *Linter) LintInput(in Input) ([]Finding, error) {
	data, err := os.ReadFile(in.Path)
	if err != nil {
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
	return l.Lint(in.Path, in.Kind, data)
}

// LintAll lints the inputs on every CPU and returns the findings in input
// order, with every error (each names its file).
func (l *Linter) LintAll(inputs []Input) ([]Finding, []error) {
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
				fs, err := l.LintInput(inputs[i])
				results[i] = result{fs, err}
			}
		}()
	}
	for i := range inputs {
		next <- i
	}
	close(next)
	wg.Wait()
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
