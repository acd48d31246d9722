package policy

import "strings"

// This file is the rule for a container: which names the image it runs is
// judged by. Every runtime tells the same two things, what the container
// was created with (typed: a name, an image ID, a digest reference) and the
// image the runtime resolved that to; the adapters only translate them.

// Container is what a runtime says about a container's image.
type Container struct {
	// Typed is the image as the container was created with it: a name,
	// an image ID (full or short), a digest reference, or empty.
	Typed string
	// ImageID is the runtime's ID for the image Typed resolved to.
	ImageID string
	// Names are that image's own names, empty when it is gone.
	Names []string
	// Resolving says that the runtime resolves Typed right now (an
	// authorization request): the image is what Typed names at this
	// moment, so a tag counts only as one of the image's own names.
	Resolving bool
}

// ContainerNames are the names a container's image is judged by: the
// image's own, with Typed in front when it counts as a name. A tag counts,
// even one that has since moved to other content: the container runs what
// the tag named when it was created. An image ID, full or a prefix of
// ImageID, is not a name and proves nothing, and neither is a digest
// reference, since runtimes resolve a digest whatever repository it is
// written with: a digest reference of this content counts only as one of
// the image's own names. A Typed that does not parse counts, and is judged
// as the invalid reference it is.
func (p *Policy) ContainerNames(c Container) []string {
	if c.Resolving || !p.typedCounts(c.Typed, c.ImageID) {
		return c.Names
	}
	out := make([]string, 1, len(c.Names)+1)
	out[0] = c.Typed
	for _, n := range c.Names {
		if n != c.Typed {
			out = append(out, n)
		}
	}
	return out
}

func (p *Policy) typedCounts(typed, imageID string) bool {
	if typed == "" || isIDOf(typed, imageID) {
		return false
	}
	r, err := p.ParseRef(typed)
	return err != nil || r.Digest == ""
}

// isIDOf reports whether s is image ID id or a prefix of it (a short ID),
// with or without the algorithm: runtimes resolve such input by ID.
func isIDOf(s, id string) bool {
	s = strings.TrimPrefix(s, "sha256:")
	id = strings.TrimPrefix(id, "sha256:")
	if s == "" || id == "" || !isHexString(s) {
		return false
	}
	return strings.HasPrefix(id, s)
}
