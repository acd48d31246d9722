package lint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// scratch is BuildKit's name for the empty base image: nothing is pulled.
// BuildKit compares it exactly, so "SCRATCH" is an (invalid) image name.
const scratch = "scratch"

// syntaxArg is the build argument that replaces the # syntax= directive.
const syntaxArg = "BUILDKIT_SYNTAX"

// platformArgs are the arguments BuildKit defines from the build and target
// platforms. lint does not know the platforms a CI job builds for, so they
// have values only when given with --build-arg.
var platformArgs = map[string]bool{
	"BUILDPLATFORM": true, "BUILDOS": true, "BUILDOSVERSION": true, "BUILDARCH": true, "BUILDVARIANT": true,
	"TARGETPLATFORM": true, "TARGETOS": true, "TARGETOSVERSION": true, "TARGETARCH": true, "TARGETVARIANT": true,
	"TARGETSTAGE": true,
}

// dockerfileImages lists every image a build of the Dockerfile would fetch:
// the # syntax= frontend, every FROM that is not a stage or scratch, and
// every COPY --from and RUN --mount from= that names no stage. Parsing and
// word expansion are BuildKit's own; which names are stages and how the
// global ARGs combine with --build-arg follows BuildKit's dockerfile2llb.
func dockerfileImages(ctx context.Context, data []byte, buildArgs map[string]string, unknownArgs map[string]bool) ([]imageUse, error) {
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, positioned(err)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, positioned(err)
	}
	if len(stages) == 0 {
		return nil, &ParseError{Err: errors.New("the Dockerfile has no FROM instruction")}
	}
	lex := shell.NewLex(res.EscapeToken)
	var uses []imageUse

	if v, ok := buildArgs[syntaxArg]; ok {
		// BuildKit takes the frontend image from the first word.
		ref, _, _ := strings.Cut(strings.TrimSpace(v), " ")
		uses = append(uses, imageUse{Line: 1, Source: "--build-arg " + syntaxArg, Input: v, Ref: ref})
	} else if ref, _, loc, ok := parser.DetectSyntax(data); ok {
		uses = append(uses, imageUse{Line: firstLine(loc), Source: "# syntax", Input: ref, Ref: ref})
	}

	global, err := newGlobalArgs(ctx, lex, metaArgs, buildArgs, unknownArgs)
	if err != nil {
		return nil, err
	}

	// BuildKit registers stage names lower-cased and, for FROM, looks the
	// expanded base name up among the stages before it, as written.
	earlier := map[string]bool{}
	all := map[string]bool{}
	for _, st := range stages {
		if st.Name != "" {
			all[st.Name] = true
		}
	}
	for _, st := range stages {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		line := firstLine(st.Location)
		u := global.expand(st.BaseName)
		u.Line, u.Source, u.Input = line, "FROM", st.BaseName
		switch {
		case u.Unresolved == "" && u.Ref == "":
			u.Unresolved = fmt.Sprintf("base name (%s) should not be blank", st.BaseName)
			uses = append(uses, u)
		case u.Unresolved == "" && (u.Ref == scratch || earlier[u.Ref]):
			// not an image
		default:
			uses = append(uses, u)
		}
		if st.Name != "" {
			earlier[st.Name] = true
		}
		for _, cmd := range st.Commands {
			uses = append(uses, commandImages(cmd, lex, all, len(stages))...)
		}
	}
	return uses, nil
}

// commandImages lists the images one instruction inside a stage mounts or
// copies from. Neither COPY --from nor RUN --mount from= expands variables
// in BuildKit: a stage name, a stage index (COPY only) or an image name.
func commandImages(cmd instructions.Command, lex *shell.Lex, stages map[string]bool, nStages int) []imageUse {
	line := firstLine(cmd.Location())
	switch c := cmd.(type) {
	case *instructions.CopyCommand:
		if c.From == "" {
			return nil
		}
		u := imageUse{Line: line, Source: "COPY --from", Input: c.From, Ref: c.From}
		if r, err := lex.ProcessWordWithMatches(c.From, shell.EnvsFromSlice(nil)); err != nil || r.Result != c.From {
			// BuildKit refuses to build this; judge it denied.
			u.Ref, u.Unresolved = "", "variable expansion is not supported for --from"
			return []imageUse{u}
		}
		if i, err := strconv.Atoi(c.From); err == nil {
			if i < 0 || i >= nStages {
				u.Ref, u.Unresolved = "", fmt.Sprintf("invalid stage index %d", i)
				return []imageUse{u}
			}
			return nil
		}
		if stages[strings.ToLower(c.From)] {
			return nil
		}
		return []imageUse{u}
	case *instructions.RunCommand:
		var uses []imageUse
		for _, m := range instructions.GetMounts(c) {
			if m.From == "" || stages[strings.ToLower(m.From)] {
				continue
			}
			uses = append(uses, imageUse{Line: line, Source: "RUN --mount", Input: m.From, Ref: m.From})
		}
		return uses
	}
	return nil
}

// globalArgs are the ARGs declared before the first FROM, the only ones a
// FROM line can use, with --build-arg applied as BuildKit applies it.
type globalArgs struct {
	lex      *shell.Lex
	values   map[string]string
	keys     []string
	declared map[string]bool
	// unknown says, for each argument, why its value is not what a build
	// would use: the arguments without a value it was expanded from, or an
	// expansion lint refused (expand.go).
	unknown map[string][]string
	expansionBudget
}

// unknownArgs are build arguments that are passed with a value lint cannot
// know (a Compose build arg taken from the environment): an ARG among them
// is unresolved whatever its default.
func newGlobalArgs(ctx context.Context, lex *shell.Lex, metaArgs []instructions.ArgCommand, buildArgs map[string]string, unknownArgs map[string]bool) (*globalArgs, error) {
	g := &globalArgs{lex: lex, values: map[string]string{}, declared: map[string]bool{}, unknown: map[string][]string{},
		expansionBudget: expansionBudget{totalLeft: maxExpansionTotal}}
	names := make([]string, 0, len(buildArgs))
	for name := range buildArgs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if platformArgs[name] {
			g.set(name, buildArgs[name], nil)
		}
	}
	for _, cmd := range metaArgs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, kv := range cmd.Args {
			g.declared[kv.Key] = true
			if unknownArgs[kv.Key] {
				g.set(kv.Key, "", []string{noValue(kv.Key)})
				continue
			}
			if v, ok := buildArgs[kv.Key]; ok {
				g.set(kv.Key, v, nil)
				continue
			}
			if kv.Value == nil {
				continue // keeps an earlier value, if any
			}
			line := firstLine(cmd.Location())
			r, refused, err := g.process(*kv.Value)
			if err != nil {
				return nil, &ParseError{Line: line, Err: err}
			}
			if refused != "" {
				g.set(kv.Key, "", []string{fmt.Sprintf("ARG %s on line %d %s", kv.Key, line, refused)})
				continue
			}
			g.set(kv.Key, r.Result, g.unknownIn(r))
		}
	}
	return g, nil
}

func (g *globalArgs) set(name, value string, unknown []string) {
	if _, ok := g.values[name]; !ok {
		g.keys = append(g.keys, name)
	}
	g.values[name] = value
	g.unknown[name] = unknown
}

// Get and Keys make globalArgs BuildKit's shell.EnvGetter. Get hands the
// lexer a value only while the expansion's budget lasts (expand.go).
func (g *globalArgs) Get(name string) (string, bool) {
	v, ok := g.values[name]
	return g.read(v), ok
}

func (g *globalArgs) Keys() []string { return g.keys }

// unknownIn says why an expansion is not what a build would use: it
// depended, directly or through the value of another argument, on an
// argument whose value the build may set but lint does not know (a global
// ARG declared without a default and not given with --build-arg, or a
// platform argument), or on one whose expansion lint refused. Any other
// name is unset in every build (BuildKit ignores --build-arg for
// undeclared names) and expands to nothing, here as there.
func (g *globalArgs) unknownIn(r shell.ProcessWordResult) []string {
	set := map[string]bool{}
	for name := range r.Unmatched {
		if g.declared[name] || platformArgs[name] {
			set[noValue(name)] = true
		}
	}
	for name := range r.Matched {
		for _, why := range g.unknown[name] {
			set[why] = true
		}
	}
	out := make([]string, 0, len(set))
	for why := range set {
		out = append(out, why)
	}
	sort.Strings(out)
	return out
}

func noValue(name string) string {
	return fmt.Sprintf("ARG %s has no value (pass --build-arg %s=...)", name, name)
}

// expand resolves a FROM image with the global arguments. A reference that
// depends on an argument without a value is unresolved: the image a build
// would pull is not known, so it cannot be allowed.
func (g *globalArgs) expand(word string) imageUse {
	r, refused, err := g.process(word)
	switch {
	case err != nil:
		return imageUse{Unresolved: err.Error()}
	case refused != "":
		return imageUse{Unresolved: "unresolved: the reference " + refused}
	}
	if why := g.unknownIn(r); len(why) > 0 {
		return imageUse{Unresolved: "unresolved: " + strings.Join(why, "; ")}
	}
	return imageUse{Ref: r.Result}
}

func firstLine(loc []parser.Range) int {
	if len(loc) == 0 {
		return 0
	}
	return loc[0].Start.Line
}

// positioned gives a BuildKit parse error the line it reports. The line
// goes in front, as file:line; instructions.Parse also writes it into its
// message ("dockerfile parse error on line N: ..."), which is then dropped.
func positioned(err error) error {
	pe := &ParseError{Err: err}
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 {
		pe.Line = firstLine(le.Locations[0])
	}
	if inner := errors.Unwrap(err); inner != nil && pe.Line > 0 &&
		strings.HasPrefix(err.Error(), fmt.Sprintf("dockerfile parse error on line %d: ", pe.Line)) {
		pe.Err = inner
	}
	return pe
}
