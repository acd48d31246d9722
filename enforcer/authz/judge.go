package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/policy"
)

// verdict is the outcome of judging one request.
type verdict struct {
	allowed bool
	// decision is the denial that refused the request, for the record.
	decision policy.Decision
	imageID  string
	// msg explains a refusal to the Docker user (without the
	// "pullguard: " prefix).
	msg string
	// err is set when the request could not be judged (an image lookup
	// failed): it is refused, and journaled as failed rather than blocked.
	err error
}

var allowed = verdict{allowed: true}

var allowResponse = Response{Allow: true}

// authorize judges one AuthZReq call.
func (s *Server) authorize(ctx context.Context, req *Request) Response {
	t, err := route(req.RequestMethod, req.RequestURI)
	if err == nil && t.endpoint == otherEndpoint {
		return allowResponse
	}
	now := s.now()
	log := s.log.WithFields(logrus.Fields{"method": req.RequestMethod, "uri": req.RequestURI})
	p := s.policies.Current()
	if p == nil {
		// The daemon serves the plugin only once a policy is loaded; this
		// is a refusal that says why rather than a guess.
		log.Error("authorization plugin: no policy is loaded; refusing the request")
		return Response{Msg: "pullguard: no policy is loaded; refusing " + req.RequestMethod + " " + t.path}
	}
	var v verdict
	if err != nil {
		v = refuse(req, t, err)
	} else {
		v = s.judge(ctx, p, now, req, t, log)
	}
	if v.allowed {
		return allowResponse
	}
	rec := enforcer.Record{
		Action:   enforcer.Blocked,
		Runtime:  enforcer.RuntimeDocker,
		Event:    "authz",
		ImageID:  v.imageID,
		Mode:     p.Mode,
		Decision: v.decision,
		Time:     now,
	}
	if v.err != nil {
		// Not a judgement of the image: what failed is what an operator
		// needs to see (PULLGUARD_ERROR), in either mode.
		rec.Action, rec.Err = enforcer.Failed, v.err
		s.rep.Report(rec)
		if p.Mode != policy.ModeEnforce {
			return allowResponse
		}
		return Response{Msg: "pullguard: " + v.msg}
	}
	if p.Mode != policy.ModeEnforce {
		rec.Action = enforcer.Audited(enforcer.Blocked)
		s.rep.Report(rec)
		return allowResponse
	}
	s.rep.Report(rec)
	return Response{Msg: "pullguard: " + v.msg}
}

func (s *Server) judge(ctx context.Context, p *policy.Policy, now time.Time, req *Request, t target, log logrus.FieldLogger) verdict {
	switch t.endpoint {
	case imagesCreate:
		return s.judgeImagesCreate(p, now, req, t)
	case containersCreate:
		return s.judgeContainersCreate(ctx, p, now, req, t, log)
	case imagesTag:
		return s.judgeTag(ctx, p, now, req, t, log)
	case build:
		return s.judgeBuild(p, now, req, t)
	case commit:
		return s.judgeCommit(p, now, req, t)
	case grpc:
		if localDenied(p) {
			return localContent(req, t)
		}
	case pluginPull, pluginUpgrade, pluginCreate:
		return s.judgePlugin(p, now, req, t)
	}
	return allowed
}

// refuse is a refusal of a request that cannot be judged as written.
func refuse(req *Request, t target, why error) verdict {
	d := policy.Decision{Input: req.RequestMethod + " " + t.path, Reason: why.Error()}
	return verdict{decision: d, msg: d.Err().Error()}
}

// judgeImagesCreate judges a pull (fromImage) or an import (fromSrc with
// repo and tag), as dockerd's postImagesCreate reads them.
func (s *Server) judgeImagesCreate(p *policy.Policy, now time.Time, req *Request, t target) verdict {
	// A pull has no body, so a body pullguard cannot see can only hide
	// parameters (dockerd reads a urlencoded body before the query). This
	// refuses docker import from a file or stdin too: its tarball body is
	// not forwarded either.
	if requestBody(req) == bodyWithheld {
		return refuse(req, t, errBodyWithheld)
	}
	f, err := requestForm(req, t)
	if err != nil {
		return refuse(req, t, err)
	}
	// fromSrc (a URL, or "-" for the body) is read only to refuse it
	// repeated: what an import is named is what matters.
	var vals [4]string
	for i, k := range []string{"fromImage", "tag", "repo", "fromSrc"} {
		if vals[i], err = single(f, k); err != nil {
			return refuse(req, t, err)
		}
	}
	image, tag, repo := vals[0], vals[1], vals[2]
	if image != "" {
		return judgePull(p, now, image, tag)
	}
	if localDenied(p) {
		return localContent(req, t) // an import
	}
	if repo == "" {
		// An import without a name makes an image known only by its ID:
		// running or tagging it is judged, and refused, by its lack of names.
		return allowed
	}
	name, err := importName(repo, tag)
	if err != nil {
		return denied(p, invalid(joinTag(repo, tag), err))
	}
	return decided(p, p.Decide(name, now))
}

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

func judgePull(p *policy.Policy, now time.Time, image, tag string) verdict {
	ref, err := pullRef(image, tag)
	if err != nil {
		return denied(p, invalid(joinTag(image, tag), err))
	}
	if reference.IsNameOnly(ref) {
		return judgeAllTags(p, now, ref.Name())
	}
	return decided(p, p.Decide(ref.String(), now))
}

// judgeAllTags judges a pull of every tag of a repository (docker pull -a,
// or fromImage without tag). Which tags exist is known only to the
// registry, and changes, so the pull is allowed only if every tag would be:
// an allow rule without tags: or digests: (or default: allow) covers the
// repository, and no deny rule that lists tags matches any tag of it.
func judgeAllTags(p *policy.Policy, now time.Time, name string) verdict {
	ref, err := policy.ParseRef(name)
	if err != nil {
		return denied(p, invalid(name, err))
	}
	repo := ref
	repo.Tag, repo.Digest, repo.String = "", "", ref.Name
	d := p.DecideRef(repo, now)
	if d.Allowed {
		// Probe each tag glob of each deny rule with a tag it matches: if
		// the rule covers this repository, that tag is denied.
		for _, r := range p.Deny {
			for _, g := range r.Tags {
				w, ok := globWitness(g)
				if !ok {
					continue // the rule matches no tag at all
				}
				probe := repo
				probe.Tag, probe.String = w, ref.Name+":"+w
				if d = p.DecideRef(probe, now); !d.Allowed {
					break
				}
			}
			if !d.Allowed {
				break
			}
		}
	}
	if d.Allowed {
		return allowed
	}
	return verdict{decision: d, msg: fmt.Sprintf("a pull of every tag of %s is allowed only if every tag is: %s", ref.Name, deniedText(p, d))}
}

// globWitness returns a tag that the path.Match glob g matches, or false
// if no tag can match it (a class that admits no tag character). Tag globs
// are checked at load: only tag characters, *, ?, and [classes].
func globWitness(g string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(g); i++ {
		switch c := g[i]; c {
		case '*':
		case '?':
			b.WriteByte('a')
		case '[':
			// [, an optional ^, at least one character, then the first ].
			j := i + 1
			if j < len(g) && g[j] == '^' {
				j++
			}
			k := strings.IndexByte(g[min(j+1, len(g)):], ']')
			if k < 0 {
				return "", false
			}
			end := j + 1 + k
			found := false
			for _, ch := range tagChars {
				if ok, _ := path.Match(g[i:end+1], string(ch)); ok {
					b.WriteRune(ch)
					found = true
					break
				}
			}
			if !found {
				return "", false
			}
			i = end
		default:
			b.WriteByte(c)
		}
	}
	w := b.String()
	ok, _ := path.Match(g, w)
	return w, ok
}

const tagChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

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

// containerConfig is the one field of POST /containers/create's body that
// pullguard reads. encoding/json matches keys without regard to case and
// keeps the last duplicate, exactly as for dockerd, which decodes the same
// body with it.
type containerConfig struct {
	Image string
}

func (s *Server) judgeContainersCreate(ctx context.Context, p *policy.Policy, now time.Time, req *Request, t target, log logrus.FieldLogger) verdict {
	switch requestBody(req) {
	case bodyWithheld:
		return refuse(req, t, errBodyWithheld)
	case bodyNone:
		return refuse(req, t, fmt.Errorf("it has no body, so it names no image"))
	}
	var cfg containerConfig
	// Like dockerd, read the first JSON value and ignore what follows it.
	if err := json.NewDecoder(bytes.NewReader(req.RequestBody)).Decode(&cfg); err != nil {
		return refuse(req, t, fmt.Errorf("its body is not the JSON of a container: %w", err))
	}
	return s.judgeLocal(ctx, p, now, cfg.Image, log)
}

// judgeLocal judges an image named the way Docker resolves names for
// container creation and tagging: a name, a short or full ID, or a digest.
// An image in the local store is allowed if one of its names is. The
// reference as typed counts only as one of those names, because Docker
// resolves an ID prefix, or a digest whatever repository it is written
// with, to an image that need not have that name. An image Docker does not
// have is judged by the reference as typed: Docker will refuse the
// request, and docker run then pulls it, which is judged too.
func (s *Server) judgeLocal(ctx context.Context, p *policy.Policy, now time.Time, typed string, log logrus.FieldLogger) verdict {
	if _, err := reference.ParseAnyReference(typed); err != nil {
		return denied(p, invalid(typed, err))
	}
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	img, found, err := s.images.ResolveImage(rctx, typed)
	cancel()
	if err != nil {
		log.WithError(err).WithField("image", typed).Warn("authorization plugin: image lookup failed; refusing the request")
		d := policy.Decision{Input: typed, Reason: "pullguard could not look the image up in Docker's image store: " + err.Error(), PolicyHash: p.Hash}
		return verdict{decision: d, msg: d.Err().Error(), err: err}
	}
	if !found {
		return decided(p, p.Decide(typed, now))
	}
	var typedRef string
	if r, err := policy.ParseRef(typed); err == nil {
		typedRef = r.String
	}
	// The image is allowed if it may stay and run: one of its names is.
	judged := p.DecideImage(img.Names, "", now)
	if judged.Allowed {
		return allowed
	}
	var first, same *policy.Decision
	for i, n := range judged.Names {
		if n.ImageID {
			continue
		}
		d := judged.Names[i].Decision
		if first == nil {
			first = &d
		}
		// The name as the image has it: d.Reference may carry the digest
		// the name was judged with.
		if r, err := policy.ParseRef(n.Name); same == nil && typedRef != "" && err == nil && r.String == typedRef {
			d.Reference = typedRef // as the user typed it, for the message
			same = &d
		}
	}
	v := verdict{imageID: img.ID}
	switch {
	case same != nil:
		v.decision, v.msg = *same, deniedText(p, *same)
		if len(img.Names) > 1 {
			v.msg += fmt.Sprintf("; none of the image's other %d names is allowed either", len(img.Names)-1)
		}
	case first != nil:
		v.decision = *first
		v.msg = fmt.Sprintf("%s has no allowed name: %s", describeImage(typed, img.ID), deniedText(p, *first))
	default:
		v.decision = policy.Decision{Input: typed, Reason: "the image has no name, only an ID, so where it came from cannot be judged", PolicyHash: p.Hash}
		v.msg = fmt.Sprintf("%s is not allowed: %s", describeImage(typed, img.ID), v.decision.Reason)
	}
	return v
}

// judgeTag allows POST /images/{name}/tag?repo=&tag= only if the new name
// is allowed and the image already has an allowed name: tagging must not
// turn a disallowed image into an allowed one, nor make a disallowed name.
func (s *Server) judgeTag(ctx context.Context, p *policy.Policy, now time.Time, req *Request, t target, log logrus.FieldLogger) verdict {
	repo, tag, err := repoAndTag(req, t)
	if err != nil {
		return refuse(req, t, err)
	}
	prefix := fmt.Sprintf("cannot tag %s as %s: ", t.name, joinTag(repo, tag))
	var v verdict
	if name, err := tagName(repo, tag); err != nil {
		v = denied(p, invalid(joinTag(repo, tag), err))
	} else {
		v = decided(p, p.Decide(name, now))
	}
	if v.allowed {
		v = s.judgeLocal(ctx, p, now, t.name, log)
	}
	if !v.allowed {
		v.msg = prefix + v.msg
	}
	return v
}

// buildOutput is one entry of POST /build's outputs parameter. BuildKit's
// image exporter ("moby") takes the image's names from Attrs["name"].
type buildOutput struct {
	Type  string
	Attrs map[string]string
}

// judgeBuild judges the names a build gives its image: every t= and every
// name= of an output. The body is the build context (a tarball), which
// dockerd never forwards: it is not refused for that, or no build could
// run. Whatever a build's body could add is a name on locally built
// content, which running or tagging it would still have to pass.
func (s *Server) judgeBuild(p *policy.Policy, now time.Time, req *Request, t target) verdict {
	if localDenied(p) {
		return localContent(req, t)
	}
	f, err := requestForm(req, t)
	if err != nil {
		return refuse(req, t, err)
	}
	names := append([]string(nil), f["t"]...)
	for _, o := range f["outputs"] {
		var outs []buildOutput
		if err := json.Unmarshal([]byte(o), &outs); err != nil {
			return refuse(req, t, fmt.Errorf("its outputs parameter is not valid JSON: %w", err))
		}
		for _, out := range outs {
			if n, ok := out.Attrs["name"]; ok {
				names = append(names, strings.Split(n, ",")...)
			}
		}
	}
	for _, n := range names {
		if n = strings.TrimSpace(n); n == "" {
			continue // dockerd skips empty tags
		}
		ref, err := reference.ParseNormalizedNamed(n)
		if err != nil {
			return denied(p, invalid(n, err))
		}
		if v := decided(p, p.Decide(reference.TagNameOnly(ref).String(), now)); !v.allowed {
			return v
		}
	}
	return allowed
}

// invalid is the denial of a reference that does not parse, worded as the
// policy words it.
func invalid(input string, err error) policy.Decision {
	return policy.Decision{Input: input, Reason: "invalid reference: " + err.Error()}
}

func decided(p *policy.Policy, d policy.Decision) verdict {
	if d.Allowed {
		return allowed
	}
	return denied(p, d)
}

func denied(p *policy.Policy, d policy.Decision) verdict {
	return verdict{decision: d, msg: deniedText(p, d)}
}

// deniedText is the denial in the policy's words, plus where the default
// was set when no rule decided, so the user knows where to look.
func deniedText(p *policy.Policy, d policy.Decision) string {
	if d.Rule != nil || d.Reference == "" || d.ForWantOfProvenance() {
		return d.Err().Error()
	}
	plain := d
	plain.Resembles = ""
	msg := plain.Err().Error() + " (" + defaultSource(p) + ")"
	if d.Resembles != "" {
		msg += "; it resembles the allowed " + d.Resembles
	}
	return msg
}

func defaultSource(p *policy.Policy) string {
	src := p.DefaultSource.String()
	if src == "" && len(p.Files) > 0 {
		src = p.Files[0]
	}
	if src == "" {
		return "default: " + string(p.Default)
	}
	return "default: " + string(p.Default) + ", " + src
}

// describeImage names a resolved image for a message: by its short ID when
// that is what the user typed, else as "typed (image <short ID>)".
func describeImage(typed, id string) string {
	short := shortID(id)
	if t := strings.TrimPrefix(typed, "sha256:"); strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), t) {
		return "image " + short
	}
	return typed + " (image " + short + ")"
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
