package authz

// This file reads requests the way dockerd (20.10 to 29) parses them: what
// it makes of the parameters is what it will do, so that is what is judged.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// pullRef is the reference dockerd 20.10's PullImage makes of fromImage and
// tag: a trailing ":" is dropped (docker pull -a sends one), a tag that is
// a digest replaces any tag, and a tag replaces the one in fromImage.
func pullRef(image, tag string) (reference.Named, error) {
	ref, err := reference.ParseNormalizedNamed(strings.TrimSuffix(image, ":"))
	if err != nil {
		return nil, err
	}
	if tag == "" {
		return ref, nil
	}
	if d, derr := digest.Parse(tag); derr == nil {
		return reference.WithDigest(reference.TrimNamed(ref), d)
	}
	return reference.WithTag(ref, tag)
}

// importName is the name dockerd 20.10's ImportImage gives an import:
// repo with tag (when given) in place of its own, :latest by default.
func importName(repo, tag string) (string, error) {
	ref, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return "", err
	}
	if tag != "" {
		if ref, err = reference.WithTag(ref, tag); err != nil {
			return "", err
		}
	}
	return reference.TagNameOnly(ref).String(), nil
}

// tagName is the name dockerd 20.10's TagImage gives: repo without its own
// tag or digest when tag is given, :latest by default.
func tagName(repo, tag string) (string, error) {
	ref, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return "", err
	}
	if tag != "" {
		if ref, err = reference.WithTag(reference.TrimNamed(ref), tag); err != nil {
			return "", err
		}
	}
	return reference.TagNameOnly(ref).String(), nil
}

func joinTag(name, tag string) string {
	if tag == "" {
		return name
	}
	return name + ":" + tag
}

// containerConfig is what pullguard reads of POST /containers/create's
// body: the image it runs and its mounts (image mounts, mounts.go).
// encoding/json matches keys without regard to case and keeps the last
// duplicate, exactly as for dockerd, which decodes the same body with it.
type containerConfig struct {
	Image      string
	HostConfig struct{ Mounts []mountSpec }
}

// serviceSpec is what pullguard reads of a swarm service's spec (POST
// /services/create and /services/{id}/update): the image its tasks run and
// their mounts, or the plugin a plugin service installs. Read as
// containerConfig is.
type serviceSpec struct {
	TaskTemplate struct {
		ContainerSpec *struct {
			Image  string
			Mounts []mountSpec
		}
		PluginSpec *struct{ Name, Remote string }
	}
}

// readServiceSpec is the service spec of a request to create or update one.
func readServiceSpec(req *Request) (serviceSpec, error) {
	var spec serviceSpec
	err := readJSONBody(req, "service", &spec)
	return spec, err
}

// buildOutput is one entry of POST /build's outputs parameter. BuildKit's
// image exporter ("moby") takes the image's names from Attrs["name"].
type buildOutput struct {
	Type  string
	Attrs map[string]string
}

// imagesCreateParams are what dockerd's postImagesCreate reads: a pull
// (fromImage, tag) or an import (fromSrc, repo, tag).
type imagesCreateParams struct{ image, tag, repo string }

func readImagesCreate(req *Request, t target) (imagesCreateParams, error) {
	// A pull has no body, so a body pullguard cannot see can only hide
	// parameters (dockerd reads a urlencoded body before the query). This
	// refuses docker import from a file or stdin too: its tarball body is
	// not forwarded either.
	if requestBody(req) == bodyWithheld {
		return imagesCreateParams{}, errBodyWithheld
	}
	f, err := requestForm(req, t)
	if err != nil {
		return imagesCreateParams{}, err
	}
	// fromSrc (a URL, or "-" for the body) is read only to refuse it
	// repeated: what an import is named is what matters.
	var vals [4]string
	for i, k := range []string{"fromImage", "tag", "repo", "fromSrc"} {
		if vals[i], err = single(f, k); err != nil {
			return imagesCreateParams{}, err
		}
	}
	return imagesCreateParams{image: vals[0], tag: vals[1], repo: vals[2]}, nil
}

// readContainer is what POST /containers/create runs and mounts.
func readContainer(req *Request) (containerConfig, error) {
	var cfg containerConfig
	err := readJSONBody(req, "container", &cfg)
	return cfg, err
}

// readJSONBody decodes a judged request's JSON body (the JSON of a what)
// into v. Like dockerd 20.10, it reads the first JSON value and ignores
// what follows it (dockerd 29 refuses such a body itself).
func readJSONBody(req *Request, what string, v any) error {
	switch requestBody(req) {
	case bodyWithheld:
		return errBodyWithheld
	case bodyNone:
		return fmt.Errorf("it has no body, so it names no image")
	}
	if err := json.NewDecoder(bytes.NewReader(req.RequestBody)).Decode(v); err != nil {
		return fmt.Errorf("its body is not the JSON of a %s: %w", what, err)
	}
	return nil
}

// readTag is the repo and tag of POST /images/{name}/tag.
func readTag(req *Request, t target) (repo, tag string, err error) {
	if requestBody(req) == bodyWithheld {
		return "", "", errBodyWithheld
	}
	f, err := requestForm(req, t)
	if err != nil {
		return "", "", err
	}
	if repo, err = single(f, "repo"); err != nil {
		return "", "", err
	}
	if tag, err = single(f, "tag"); err != nil {
		return "", "", err
	}
	return repo, tag, nil
}

// readBuildNames are the names a build gives its image: every t= and every
// name= of an output, without the empty ones dockerd skips. The body is
// the build context (a tarball), which dockerd never forwards: it is not
// refused for that, or no build could run.
func readBuildNames(req *Request, t target) ([]string, error) {
	f, err := requestForm(req, t)
	if err != nil {
		return nil, err
	}
	raw := append([]string(nil), f["t"]...)
	for _, o := range f["outputs"] {
		var outs []buildOutput
		if err := json.Unmarshal([]byte(o), &outs); err != nil {
			return nil, fmt.Errorf("its outputs parameter is not valid JSON: %w", err)
		}
		for _, out := range outs {
			if n, ok := out.Attrs["name"]; ok {
				raw = append(raw, strings.Split(n, ",")...)
			}
		}
	}
	var names []string
	for _, n := range raw {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}
