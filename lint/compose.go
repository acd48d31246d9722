package lint

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// composeImages lists services.*.image of a Compose file, and what a
// service's build pulls when Compose holds its Dockerfile: the images of
// build.dockerfile_inline (with build.args over --build-arg) and the
// docker-image:// entries of build.additional_contexts.
func composeImages(ctx context.Context, data []byte, buildArgs map[string]string) ([]imageUse, error) {
	docs, err := yamlDocuments(data)
	if err != nil {
		return nil, err
	}
	var uses []imageUse
	for _, doc := range docs {
		_, services := lookup(doc, "services")
		for _, kv := range pairs(services) {
			service := "compose service " + kv[0].Value
			if k, v := lookup(kv[1], "image"); k != nil {
				u, err := imageAt(k, v, service)
				if err != nil {
					return nil, err
				}
				uses = append(uses, composeInterpolated(u))
			}
			built, err := composeBuildImages(ctx, kv[1], service, buildArgs)
			if err != nil {
				return nil, err
			}
			uses = append(uses, built...)
		}
	}
	return uses, nil
}

// composeInterpolated resolves what Compose would interpolate into an
// image: nothing lint can know, so any variable leaves it unresolved.
func composeInterpolated(u imageUse) imageUse {
	if vars := composeVariables(u.Input); len(vars) > 0 {
		u.Ref = ""
		u.Unresolved = fmt.Sprintf("unresolved: Compose interpolates %s from the environment when it runs, so the image is not known here", strings.Join(vars, ", "))
	} else {
		u.Ref = strings.ReplaceAll(u.Input, "$$", "$")
	}
	return u
}

// composeBuildImages lists the images a service's build section pulls
// that no Dockerfile in the tree shows.
func composeBuildImages(ctx context.Context, svc *yaml.Node, service string, buildArgs map[string]string) ([]imageUse, error) {
	_, build := lookup(svc, "build")
	var uses []imageUse
	for _, kv := range composeList(lookupValue(build, "additional_contexts")) {
		if ref, ok := strings.CutPrefix(kv.value, "docker-image://"); ok {
			u := composeInterpolated(imageUse{Line: kv.line, Source: service + " build context " + kv.key, Input: ref})
			uses = append(uses, u)
		}
	}
	k, inline := lookup(build, "dockerfile_inline")
	src, ok := scalar(inline)
	if !ok {
		return uses, nil
	}
	// The build gets build.args over the command line's. One that Compose
	// takes from the environment (no value, or a variable) is unknown here
	// unless --build-arg says what the environment holds.
	args := map[string]string{}
	for name, v := range buildArgs {
		args[name] = v
	}
	unknown := map[string]bool{}
	for _, kv := range composeList(lookupValue(build, "args")) {
		if !kv.hasValue || len(composeVariables(kv.value)) > 0 {
			if _, given := buildArgs[kv.key]; !given {
				unknown[kv.key] = true
			}
			continue
		}
		args[kv.key] = strings.ReplaceAll(kv.value, "$$", "$")
	}
	// Line n of the Dockerfile is on line offset+n of the Compose file: a
	// block scalar starts on the line after its key.
	offset := inline.Line - 1
	if inline.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		offset = inline.Line
	}
	inner, err := dockerfileImages(ctx, []byte(src), args, unknown)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			line := k.Line
			if pe.Line > 0 {
				line = offset + pe.Line
			}
			return nil, &ParseError{Line: line, Err: fmt.Errorf("%s dockerfile_inline: %w", service, pe.Err)}
		}
		return nil, err
	}
	for _, u := range inner {
		u.Line += offset
		u.Source = service + " dockerfile_inline " + u.Source
		uses = append(uses, u)
	}
	return uses, nil
}

// lookupValue is the value of key in a mapping, or nil.
func lookupValue(m *yaml.Node, key string) *yaml.Node {
	_, v := lookup(m, key)
	return v
}

// composeEntry is one entry of a Compose map that may be written as a
// mapping (KEY: VALUE) or as a list ("KEY=VALUE", or "KEY" alone).
type composeEntry struct {
	key, value string
	hasValue   bool
	line       int
}

func composeList(n *yaml.Node) []composeEntry {
	var out []composeEntry
	switch {
	case n == nil:
	case n.Kind == yaml.MappingNode:
		for _, kv := range pairs(n) {
			v, ok := scalar(kv[1])
			if kv[1] != nil && kv[1].Tag == "!!null" {
				ok = false
			}
			out = append(out, composeEntry{key: kv[0].Value, value: v, hasValue: ok, line: kv[0].Line})
		}
	case n.Kind == yaml.SequenceNode:
		for _, item := range n.Content {
			s, _ := scalar(resolve(item))
			k, v, ok := strings.Cut(s, "=")
			out = append(out, composeEntry{key: k, value: v, hasValue: ok, line: item.Line})
		}
	}
	return out
}

// composeVariables lists the variables Compose would interpolate into s
// ($VAR, ${VAR}, ${VAR:-default}, ...); $$ is a literal dollar sign.
func composeVariables(s string) []string {
	var vars []string
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			i++
			continue
		}
		rest := strings.TrimPrefix(s[i+1:], "{")
		end := strings.IndexFunc(rest, func(r rune) bool { return !(r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) })
		if end < 0 {
			end = len(rest)
		}
		name := rest[:end]
		if name == "" {
			name = "$" + rest
		}
		vars = append(vars, "$"+strings.TrimPrefix(name, "$"))
	}
	return vars
}
