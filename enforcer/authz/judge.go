package authz

import (
	"context"
	"errors"
	"fmt"
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
		Hook:     "authz",
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
		return s.judgeImagesCreate(ctx, p, now, req, t)
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
	case servicesCreate, servicesUpdate:
		return s.judgeService(ctx, p, now, req, t, log)
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
func (s *Server) judgeImagesCreate(ctx context.Context, p *policy.Policy, now time.Time, req *Request, t target) verdict {
	q, err := readImagesCreate(req, t)
	if err != nil {
		return refuse(req, t, err)
	}
	if q.image != "" {
		return s.judgePull(ctx, p, now, q.image, q.tag)
	}
	if localDenied(p) {
		return localContent(req, t) // an import (local.go)
	}
	if q.repo == "" {
		// An import without a name makes an image known only by its ID:
		// running or tagging it is judged by its lack of names.
		return allowed
	}
	name, err := importName(q.repo, q.tag)
	if err != nil {
		return denied(p, invalid(joinTag(q.repo, q.tag), err))
	}
	return decided(p, p.Decide(name, now))
}

// judgePull judges a pull by the reference it fetches. Where a signed-by
// rule names it, the tag is resolved at the registry to the manifest digest
// the pull would fetch and that digest's signatures are verified first: no
// proof (unsigned, or a registry that cannot be reached), no pull.
func (s *Server) judgePull(ctx context.Context, p *policy.Policy, now time.Time, image, tag string) verdict {
	ref, err := pullRef(image, tag)
	if err != nil {
		return denied(p, invalid(joinTag(image, tag), err))
	}
	if reference.IsNameOnly(ref) {
		return judgeAllTags(p, now, ref.Name())
	}
	d := p.Decide(ref.String(), now)
	if (d.NeedsEvidence() != nil || d.NeedsAttestations() != nil) && s.signatures != nil {
		d = s.signatures.Decide(ctx, p, ref.String(), now)
	}
	return decided(p, d)
}

// judgeAllTags judges a pull of every tag of a repository (docker pull -a,
// or fromImage without tag): allowed only if every tag would be
// (policy.DecideAllTags).
func judgeAllTags(p *policy.Policy, now time.Time, name string) verdict {
	d := p.DecideAllTags(name, now)
	if d.Allowed {
		return allowed
	}
	ref, err := p.ParseRef(name)
	if err != nil {
		return denied(p, d) // not a reference
	}
	return verdict{decision: d, msg: fmt.Sprintf("a pull of every tag of %s is allowed only if every tag is: %s", ref.Name, deniedText(p, d))}
}

func (s *Server) judgeContainersCreate(ctx context.Context, p *policy.Policy, now time.Time, req *Request, t target, log logrus.FieldLogger) verdict {
	cfg, err := readContainer(req)
	if err != nil {
		return refuse(req, t, err)
	}
	if v := s.judgeLocal(ctx, p, now, cfg.Image, log); !v.allowed {
		return v
	}
	return s.judgeImageMounts(ctx, p, now, cfg.HostConfig.Mounts, log)
}

// judgeService judges a swarm service's spec. dockerd does not ask
// authorization plugins about what its swarm agent does for the service's
// tasks (pull the image, create and start containers), so this request is
// the last chance to refuse before a disallowed image runs, again at every
// task restart. The agent pulls the image (named, usually with the digest
// the CLI resolved) unless a reference by digest or ID is already local,
// and falls back to a local image when the pull fails: the image is judged
// as a pull, and as a local image too when Docker has it. A plugin service
// installs its plugin as POST /plugins/pull would.
//
// A rollback (update with rollback=previous) returns to a spec judged when
// it was made; the Docker guard judges whatever its tasks then run.
func (s *Server) judgeService(ctx context.Context, p *policy.Policy, now time.Time, req *Request, t target, log logrus.FieldLogger) verdict {
	spec, err := readServiceSpec(req)
	if err != nil {
		return refuse(req, t, err)
	}
	if ps := spec.TaskTemplate.PluginSpec; ps != nil {
		if v := judgePluginRefs(p, now, []string{ps.Remote, ps.Name}); !v.allowed {
			return v
		}
	}
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil || cs.Image == "" {
		return allowed // dockerd refuses a container service without an image
	}
	if v := s.judgeImageMounts(ctx, p, now, cs.Mounts, log); !v.allowed {
		return v
	}
	if _, err := digest.Parse(cs.Image); err == nil {
		return s.judgeLocal(ctx, p, now, cs.Image, log) // an image ID: never pulled
	}
	if v := s.judgePull(ctx, p, now, cs.Image, ""); !v.allowed {
		return v
	}
	img, found, err := s.resolve(ctx, cs.Image)
	switch {
	case err != nil:
		return lookupFailed(p, cs.Image, err, log)
	case !found:
		return allowed // pulled: judged as a pull above
	}
	return s.judgeImage(ctx, p, now, cs.Image, img, log)
}

// judgeLocal judges an image named the way Docker resolves names for
// container creation and tagging: a name, a short or full ID, or a digest.
// An image in the local store is allowed if one of its names is. The
// reference as typed counts only as one of those names, because Docker
// resolves an ID prefix, or a digest whatever repository it is written
// with, to an image that need not have that name (policy.ContainerNames,
// resolving now). An image Docker does not
// have is judged by the reference as typed: Docker will refuse the
// request, and docker run then pulls it, which is judged too.
func (s *Server) judgeLocal(ctx context.Context, p *policy.Policy, now time.Time, typed string, log logrus.FieldLogger) verdict {
	if _, err := reference.ParseAnyReference(typed); err != nil {
		return denied(p, invalid(typed, err))
	}
	img, found, err := s.resolve(ctx, typed)
	if err != nil {
		return lookupFailed(p, typed, err, log)
	}
	if !found {
		return decided(p, p.Decide(typed, now))
	}
	return s.judgeImage(ctx, p, now, typed, img, log)
}

// lookupFailed refuses a request whose image could not be looked up; it is
// journaled as failed.
func lookupFailed(p *policy.Policy, typed string, err error, log logrus.FieldLogger) verdict {
	log.WithError(err).WithField("image", typed).Warn("authorization plugin: image lookup failed; refusing the request")
	d := policy.Decision{Input: typed, Reason: "pullguard could not look the image up in Docker's image store: " + err.Error(), PolicyHash: p.Hash}
	return verdict{decision: d, msg: d.Err().Error(), err: err}
}

// judgeImage judges img, the local image typed resolved to: allowed if it
// may stay and run.
func (s *Server) judgeImage(ctx context.Context, p *policy.Policy, now time.Time, typed string, img LocalImage, log logrus.FieldLogger) verdict {
	var typedRef string
	if r, err := policy.ParseRef(typed); err == nil {
		typedRef = r.String
	}
	// dockerd's own image store records a repository digest only for a
	// repository it pulled the content from or pushed it to; dockerd 29's
	// containerd image store shows one for every name, and the ID is the
	// records' target, which registries are asked about instead.
	image := policy.Image{Names: p.ContainerNames(policy.Container{Typed: typed, ImageID: img.ID, Names: img.Names, Resolving: true}), DigestNamesProveOrigin: !img.InContainerd}
	if img.InContainerd {
		image.Digest = img.ID
	}
	judged := s.evidence.Pass(ctx).Judge(p, image, now)
	switch judged.Outcome {
	case policy.Allowed:
		return allowed // it may stay and run: one of its names is allowed
	case policy.Undecided:
		// Refused (fail closed), journaled as failed: no answer is no proof.
		log.WithError(judged.Err).WithField("image", typed).Warn("authorization plugin: the policy could not decide about the image; refusing the request")
		d := policy.Decision{Input: typed, Reason: "pullguard could not decide: " + judged.Err.Error(), PolicyHash: p.Hash}
		if !errors.Is(judged.Err, policy.ErrSignatureUnanswered) {
			d.Reason = "pullguard could not ask the registry where the image's content came from (local-images: deny): " + judged.Err.Error()
		}
		return verdict{imageID: img.ID, decision: d, msg: d.Err().Error(), err: judged.Err}
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
		v.decision, v.msg = *same, sameNameRefusal(p, *same, len(img.Names)-1)
	case first != nil:
		v.decision, v.msg = *first, noAllowedNameRefusal(p, typed, img.ID, *first)
	default:
		v.decision = policy.Decision{Input: typed, Reason: reasonNameless, PolicyHash: p.Hash}
		v.msg = namelessRefusal(typed, img.ID)
	}
	return v
}

// judgeTag allows POST /images/{name}/tag?repo=&tag= only if the new name
// is allowed and the image already has an allowed name: tagging must not
// turn a disallowed image into an allowed one, nor make a disallowed name.
func (s *Server) judgeTag(ctx context.Context, p *policy.Policy, now time.Time, req *Request, t target, log logrus.FieldLogger) verdict {
	repo, tag, err := readTag(req, t)
	if err != nil {
		return refuse(req, t, err)
	}
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
		v.msg = tagRefusal(t.name, joinTag(repo, tag), v.msg)
	}
	return v
}

// judgeBuild judges the names a build gives its image: every t= and every
// name= of an output. The body is the build context (a tarball), which
// dockerd never forwards: it is not refused for that, or no build could
// run. Whatever a build's body could add is a name on locally built
// content, which running or tagging it would still have to pass.
func (s *Server) judgeBuild(p *policy.Policy, now time.Time, req *Request, t target) verdict {
	if localDenied(p) {
		return localContent(req, t) // local.go
	}
	names, err := readBuildNames(req, t)
	if err != nil {
		return refuse(req, t, err)
	}
	for _, n := range names {
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

func decided(p *policy.Policy, d policy.Decision) verdict {
	if d.Allowed {
		return allowed
	}
	return denied(p, d)
}

func denied(p *policy.Policy, d policy.Decision) verdict {
	return verdict{decision: d, msg: deniedText(p, d)}
}
