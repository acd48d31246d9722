// Package lint judges what a repository will pull — the images named by
// Dockerfiles, Compose files and Kubernetes manifests — with the same
// policy, and the same decisions, as the hosts enforce. It finds the images;
// the policy package decides.
package lint

import (
	"context"
	"fmt"
	"time"

	"github.com/pullguard/pullguard/policy"
)

// Kind is what an input file describes.
type Kind string

const (
	Dockerfile Kind = "dockerfile"
	Compose    Kind = "compose"
	Kubernetes Kind = "kubernetes"
)

// ParseKind accepts the names --type takes.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case Dockerfile, Compose, Kubernetes:
		return k, nil
	}
	return "", fmt.Errorf("unknown input type %q (want dockerfile, compose or kubernetes)", s)
}

// imageUse is one image an input would pull, found but not yet judged.
type imageUse struct {
	Line   int
	Source string
	// Input is the reference as written; Ref is what it names after
	// expansion, empty when Unresolved says why it cannot be known.
	Input      string
	Ref        string
	Unresolved string
}

// Finding is the policy's decision on one image an input would pull.
type Finding struct {
	File string
	// Line is the first line of the instruction or of the image: key; 0
	// for a finding about the whole file (a refused link).
	Line int
	// Source says what in the file names the image: FROM, COPY --from,
	// RUN --mount, "compose service web", "Deployment web container app";
	// "symlink" for a link the walk refused (followLink).
	Source string
	// Input is the reference as written, before ARG expansion; for a
	// refused link, the link as written.
	Input string
	// Unresolved is set when the reference could not be worked out; the
	// decision is then a denial saying why.
	Unresolved bool
	Decision   policy.Decision
}

// ParseError is an input that cannot be read as its kind, with the line the
// parser reports (0 when it reports none).
type ParseError struct {
	File string
	Line int
	Err  error
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Linter judges inputs against one policy at one instant.
type Linter struct {
	Policy *policy.Policy
	Now    time.Time
	// BuildArgs are --build-arg values: they override the defaults of the
	// ARGs declared before a Dockerfile's first FROM.
	BuildArgs map[string]string
}

// Lint finds and judges every image the input would pull. name is what
// findings and errors call the input. It stops with ctx's error when ctx
// is cancelled.
func (l *Linter) Lint(ctx context.Context, name string, kind Kind, data []byte) ([]Finding, error) {
	var (
		uses []imageUse
		err  error
	)
	switch kind {
	case Dockerfile:
		uses, err = dockerfileImages(ctx, data, l.BuildArgs, nil)
	case Compose:
		uses, err = composeImages(ctx, data, l.BuildArgs)
	case Kubernetes:
		uses, _, err = kubernetesImages(data)
	default:
		err = fmt.Errorf("unknown input type %q", kind)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if pe, ok := err.(*ParseError); ok {
			pe.File = name
			return nil, pe
		}
		return nil, &ParseError{File: name, Err: err}
	}
	return l.judge(name, uses), nil
}

func (l *Linter) judge(name string, uses []imageUse) []Finding {
	out := make([]Finding, 0, len(uses))
	for _, u := range uses {
		f := Finding{File: name, Line: u.Line, Source: u.Source, Input: u.Input}
		if u.Unresolved != "" {
			f.Unresolved = true
			f.Decision = policy.Decision{Input: u.Input, Reason: u.Unresolved}
		} else {
			f.Decision = l.Policy.Decide(u.Ref, l.Now)
		}
		out = append(out, f)
	}
	return out
}
