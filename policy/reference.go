package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// Ref is an image reference normalized the way Docker normalizes it:
// "nginx" is docker.io/library/nginx:latest.
type Ref struct {
	// Name is the repository, host included: docker.io/library/nginx.
	Name   string
	Domain string
	// Path is the repository path below the host: library/nginx.
	Path string
	// Tag is the tag; "latest" when the input had neither tag nor digest,
	// empty when it had only a digest.
	Tag string
	// Digest is "sha256:<hex>" when the input carried one.
	Digest string
	// String is the full normalized reference: name[:tag][@digest].
	String string
}

// MaxReferenceLength bounds what is handed to the parser. The longest valid
// reference (255-byte name, 128-byte tag, a sha512 digest) is well under it.
const MaxReferenceLength = 1024

// ErrImageID is returned for an image ID where a name was expected: an ID
// says nothing about where an image came from, so it cannot be judged.
var ErrImageID = errors.New("an image ID, not a reference; judge the image's names instead")

// ParseRef normalizes an image reference. It fails on anything Docker would
// not accept as a reference, and on image IDs.
func ParseRef(s string) (Ref, error) {
	if len(s) > MaxReferenceLength {
		return Ref{}, fmt.Errorf("reference is %d bytes long, more than %d", len(s), MaxReferenceLength)
	}
	if isImageID(s) {
		return Ref{}, ErrImageID
	}
	if r, ok := fastParse(s); ok {
		return r, nil
	}
	return parseRefWithLibrary(s)
}

// parseRefWithLibrary is ParseRef by distribution/reference alone.
func parseRefWithLibrary(s string) (Ref, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Ref{}, err
	}
	if named, err = canonicalNamed(named); err != nil {
		return Ref{}, err
	}
	named = reference.TagNameOnly(named)
	r := Ref{
		Name:   named.Name(),
		Domain: reference.Domain(named),
		Path:   reference.Path(named),
		String: named.String(),
	}
	if t, ok := named.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		r.Digest = d.Digest().String()
	}
	return r, nil
}

// canonicalNamed puts a parsed name on its registry's canonical host (see
// canonicalHost). The canonical spelling goes through the parser again, so
// that the grammar's limits hold for it and Docker Hub's library/ prefix is
// added the way it would have been for docker.io.
func canonicalNamed(named reference.Named) (reference.Named, error) {
	domain := reference.Domain(named)
	c, err := canonicalHost(domain)
	if err != nil {
		return nil, err
	}
	if c == domain {
		return named, nil
	}
	return reference.ParseNormalizedNamed(c + named.String()[len(domain):])
}

// isImageID reports whether s is a full image ID, bare or with its
// algorithm: what `docker images --no-trunc` and containerd's config
// records show.
func isImageID(s string) bool {
	s = strings.TrimPrefix(s, "sha256:")
	return len(s) == 64 && isHexString(s)
}

// isHexString reports whether s is lower-case hex, as image IDs are written.
func isHexString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Glob markers stand in for * and ** while a pattern goes through the
// reference parser, so that the parser, not pullguard, decides what a valid
// name is and how it normalizes. They are valid in hosts and paths alike.
const (
	starMarker  = "zzpgstarzz"
	dstarMarker = "zzpgdstarzz"
)

// pattern is a normalized image pattern split into matchable parts.
type pattern struct {
	// anyHost is set for patterns that begin with "**": they match
	// repositories on every registry.
	anyHost bool
	// host is the registry (with port) in its canonical spelling, globs
	// included.
	host string
	// segments are the repository path's segments, globs included.
	segments []string
}

func (p pattern) String() string {
	if p.anyHost {
		return strings.Join(append([]string{"**"}, p.segments[1:]...), "/")
	}
	return p.host + "/" + strings.Join(p.segments, "/")
}

// parsePattern normalizes an allow or deny rule's image pattern. Globs are
// * (within one host label or path segment) and ** (any number of them, as a
// whole label or segment only).
func parsePattern(s string) (pattern, error) {
	if s == "" {
		return pattern{}, errors.New("image pattern is empty")
	}
	if strings.Contains(s, starMarker) || strings.Contains(s, dstarMarker) {
		return pattern{}, fmt.Errorf("image pattern %q contains a reserved word", s)
	}
	if strings.ContainsAny(s, "?{}\\") {
		return pattern{}, fmt.Errorf("image pattern %q: only * and ** are supported as globs", s)
	}
	if err := checkDoubleStars(s); err != nil {
		return pattern{}, err
	}
	// "**" and "**/..." match across registries. Docker's normalization
	// would put them on docker.io, which is not what anyone writing them means.
	if s == "**" || strings.HasPrefix(s, "**/") {
		rest := strings.TrimPrefix(strings.TrimPrefix(s, "**"), "/")
		segs := []string{"**"}
		if rest != "" {
			p, err := parsePath(rest)
			if err != nil {
				return pattern{}, fmt.Errorf("image pattern %q: %w", s, err)
			}
			segs = append(segs, p...)
		}
		return pattern{anyHost: true, segments: collapseDoubleStars(segs)}, nil
	}
	if !strings.ContainsAny(s, "/:@") && (strings.Contains(s, ".") || s == "localhost") {
		// Docker reads a lone name as an official image, but what has a
		// dot (or is localhost) and no path is a registry written where an
		// image belongs.
		return pattern{}, fmt.Errorf("image pattern %q is a registry, not an image (alone it would be docker.io/library/%s); write %s/** for every repository on it", s, s, s)
	}
	marked := strings.ReplaceAll(hubWide(s), "**", dstarMarker)
	marked = strings.ReplaceAll(marked, "*", starMarker)
	if domain, path, tag, digest, ok := splitFast(marked); ok {
		// The markers are lower-case letters: a plain name to the fast path.
		switch {
		case tag != "":
			return pattern{}, fmt.Errorf("image pattern %q names a tag; put tags in the rule's tags: list", s)
		case digest != "":
			return pattern{}, fmt.Errorf("image pattern %q names a digest; put digests in the rule's digests: list", s)
		}
		return pattern{host: unmark(domain), segments: collapseDoubleStars(strings.Split(unmark(path), "/"))}, nil
	}
	named, err := reference.ParseNormalizedNamed(marked)
	if err == nil {
		named, err = canonicalNamed(named) // the markers are lower case: unchanged
	}
	if err != nil {
		return pattern{}, fmt.Errorf("image pattern %q: %s", s, unmark(err.Error()))
	}
	if _, ok := named.(reference.Tagged); ok {
		return pattern{}, fmt.Errorf("image pattern %q names a tag; put tags in the rule's tags: list", s)
	}
	if _, ok := named.(reference.Digested); ok {
		return pattern{}, fmt.Errorf("image pattern %q names a digest; put digests in the rule's digests: list", s)
	}
	host := unmark(reference.Domain(named))
	segs := strings.Split(unmark(reference.Path(named)), "/")
	return pattern{host: host, segments: collapseDoubleStars(segs)}, nil
}

// hubWide writes a path that begins with ** after a host as two **
// segments, which collapseDoubleStars folds back into one. Docker's
// normalization puts a one-segment path on Docker Hub under library/, as it
// should for a name ("docker.io/*", "docker.io/nginx"), but ** is no name:
// docker.io/** is all of Docker Hub, not its official images. A path of two
// segments gets no library/, on Docker Hub's every spelling alike.
func hubWide(s string) string {
	host, path, ok := strings.Cut(s, "/")
	if !ok || (path != "**" && !strings.HasPrefix(path, "**/")) {
		return s
	}
	return host + "/**/" + path
}

func parsePath(rest string) ([]string, error) {
	marked := strings.ReplaceAll(rest, "**", dstarMarker)
	marked = strings.ReplaceAll(marked, "*", starMarker)
	// Parse under a fixed host so the parser checks the path's grammar
	// without adding docker.io's library/ prefix.
	named, err := reference.ParseNamed("pullguard.invalid/" + marked)
	if err != nil {
		return nil, errors.New(unmark(err.Error()))
	}
	if _, ok := named.(reference.NamedTagged); ok {
		return nil, errors.New("names a tag; put tags in the rule's tags: list")
	}
	return strings.Split(unmark(reference.Path(named)), "/"), nil
}

// checkDoubleStars rejects ** that is not a whole host label or path segment.
func checkDoubleStars(s string) error {
	if !strings.Contains(s, "**") {
		return nil // most patterns: nothing to split and look at
	}
	for _, seg := range strings.FieldsFunc(s, func(r rune) bool { return r == '/' || r == '.' || r == ':' }) {
		if strings.Contains(seg, "***") || (strings.Contains(seg, "**") && seg != "**") {
			return fmt.Errorf("image pattern %q: ** must be a whole path segment or host label, found %q", s, seg)
		}
	}
	return nil
}

// collapseDoubleStars folds "**/**" into "**": they match the same names.
func collapseDoubleStars(segs []string) []string {
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		if s == "**" && i > 0 && segs[i-1] == "**" {
			continue
		}
		out = append(out, s)
	}
	return out
}

func unmark(s string) string {
	s = strings.ReplaceAll(s, dstarMarker, "**")
	return strings.ReplaceAll(s, starMarker, "*")
}
