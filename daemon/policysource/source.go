// Package policysource delivers the policy as a signed OCI artifact
// (--policy-source oci://REGISTRY/REPO:TAG): it resolves the tag, verifies
// the digest's cosign signature with the configured key, downloads and
// checks the artifact, unpacks it into the root-only state directory and
// hands it to the daemon's policy watcher, which loads it with the same
// strict loader and reload rules as local files. The last artifact that
// was verified and loaded stays on disk, so a host that starts without
// the registry enforces it, and says so.
//
// It is part of the daemon's lifecycle (a long-running Run(ctx) beside the
// guards), so it lives under daemon/; it reaches registries and checks
// signatures only through enforcer/registry and enforcer/signature, the
// code that does so for images, rather than a second copy of it.
package policysource

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/daemon"
	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/enforcer/signature"
	"github.com/pullguard/pullguard/policy"
)

// Scheme prefixes a policy source.
const Scheme = "oci://"

// DefaultInterval is how often the source is checked.
const DefaultInterval = time.Minute

// DefaultStateDir is where verified artifacts are kept.
const DefaultStateDir = "/var/lib/pullguard"

// fetchTimeout bounds one artifact's download.
const fetchTimeout = time.Minute

// refusal is an artifact refused for what it is (no valid signature, not
// a policy artifact, a policy that does not load), as opposed to a
// registry that could not be asked.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

func refusedf(format string, a ...any) error { return &refusal{fmt.Sprintf(format, a...)} }

// Observer is told which artifact is in force and how each check went
// (metrics and status). Its methods must not block.
type Observer interface {
	// PolicySourceInForce: the artifact digest from source, fetched and
	// verified at fetched, is in force. stale says that it was taken from
	// the state directory because the source could not be checked.
	PolicySourceInForce(source, digest string, fetched time.Time, stale bool)
	// PolicySourceChecked: a check of the source ended; nil is success.
	PolicySourceChecked(err error)
}

// Options configure New.
type Options struct {
	// Source is oci://REGISTRY/REPO:TAG or oci://REGISTRY/REPO@sha256:….
	Source string
	// Keys are public key files; an artifact must carry a cosign
	// signature by one of them.
	Keys []string
	// Interval between checks (DefaultInterval when 0), less up to a
	// tenth at random, so that a fleet started together spreads out.
	Interval time.Duration
	// StateDir holds the verified artifacts (DefaultStateDir when "").
	StateDir    string
	LoadOptions policy.LoadOptions
	// Registry is the registry client (nil: Docker's defaults).
	Registry *registry.Client
	Log      *logrus.Logger
	Observer Observer
}

// Source is one policy source. Start, then Run.
type Source struct {
	name     string
	ref      name.Reference
	reg      *registry.Client
	sigs     *signature.Verifier
	keys     *policy.KeySet
	store    *store
	interval time.Duration
	loadOpts policy.LoadOptions
	log      *logrus.Logger
	obs      Observer

	// checkNow carries reload requests' checks to Run; checkEnd is told
	// after every check (daemon.FeedChecks).
	checkNow chan chan struct{}
	checkEnd chan struct{}

	mu      sync.Mutex
	cur     record            // in force
	bad     map[string]string // digests refused for good (their content), and why
	lastErr string            // the last failure logged
	checkOK bool              // the last check succeeded
}

// ParseRef parses oci://REGISTRY/REPO:TAG (or @sha256:…).
func ParseRef(reg *registry.Client, source string) (name.Reference, error) {
	rest, ok := strings.CutPrefix(source, Scheme)
	if !ok {
		return nil, fmt.Errorf("policy source %q: expected %sREGISTRY/REPOSITORY:TAG or @sha256:DIGEST", source, Scheme)
	}
	ref, err := reg.Reference(rest)
	if err != nil {
		return nil, fmt.Errorf("policy source %q: %w", source, err)
	}
	return ref, nil
}

// New checks the options, reads the keys and prepares the state
// directory. It does not contact the registry.
func New(o Options) (*Source, error) {
	if o.Registry == nil {
		o.Registry = registry.New(registry.Options{})
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	ref, err := ParseRef(o.Registry, o.Source)
	if err != nil {
		return nil, err
	}
	keys, err := loadKeys(o.Keys)
	if err != nil {
		return nil, err
	}
	st, err := newStore(o.StateDir)
	if err != nil {
		return nil, err
	}
	return &Source{
		name: o.Source, ref: ref, reg: o.Registry, sigs: signature.New(o.Registry), keys: keys, store: st,
		interval: o.Interval, loadOpts: o.LoadOptions, log: o.Log, obs: o.Observer, bad: map[string]string{},
		checkNow: make(chan chan struct{}), checkEnd: make(chan struct{}, 1),
	}, nil
}

// Initial is the policy to start with.
type Initial struct {
	// Path is its main file, under the state directory.
	Path string
	// Origin are the journal fields that say where it came from.
	Origin logrus.Fields
}

// Start decides the policy to start with: the artifact the source names
// now, fetched and verified unless it is the one kept from the last run;
// or, when the source cannot be checked or its artifact is refused, the
// one kept, with a warning. Without either there is no policy to enforce,
// and it fails.
func (s *Source) Start(ctx context.Context) (Initial, error) {
	kept := s.kept()
	digest, err := s.resolve(ctx)
	switch {
	case err == nil && kept != nil && digest == kept.Digest:
		s.checked(nil, "")
		return s.inForce(*kept, false), nil
	case err == nil:
		var rec record
		if rec, err = s.fetch(ctx, digest); err == nil {
			if _, lerr := policy.Load(s.store.mainFile(digest), s.loadOpts); lerr != nil {
				s.bad[digest] = lerr.Error()
				err = refusedf("artifact %s refused: its policy does not load:\n%v", digest, lerr)
			} else {
				s.commit(rec)
				s.checked(nil, "")
				return s.inForce(rec, false), nil
			}
		}
	}
	if kept == nil {
		return Initial{}, fmt.Errorf("no policy from %s (%v), and none kept in %s from an earlier run", s.name, err, s.store.dir)
	}
	_ = s.store.prune(kept.Digest)
	in := s.inForce(*kept, true)
	s.checked(err, digest)
	in.Origin[daemon.FieldError] = err.Error()
	return in, nil
}

// inForce notes rec as the artifact in force.
func (s *Source) inForce(rec record, stale bool) Initial {
	s.mu.Lock()
	s.cur = rec
	s.mu.Unlock()
	s.obs.PolicySourceInForce(rec.Source, rec.Digest, rec.Fetched, stale)
	return Initial{Path: s.store.mainFile(rec.Digest), Origin: origin(rec)}
}

func origin(rec record) logrus.Fields {
	return logrus.Fields{
		daemon.FieldPolicySource:  rec.Source,
		daemon.FieldPolicyDigest:  rec.Digest,
		daemon.FieldPolicyFetched: rec.Fetched.UTC().Format(time.RFC3339),
	}
}

// kept is the last artifact that was verified and loaded, when it came
// from this source, was verified with one of these keys and is whole on
// disk; otherwise nil (and why is logged).
func (s *Source) kept() *record {
	rec, err := s.store.readRecord()
	if err != nil {
		s.log.WithError(err).Warn("policy source: the state directory's record of the last policy is unreadable; not using it")
		return nil
	}
	if rec == nil {
		return nil
	}
	known := false
	for _, k := range s.keys.Keys {
		known = known || k.Fingerprint == rec.Key
	}
	switch {
	case rec.Source != s.name:
		s.log.Infof("policy source: the kept policy came from %s, not %s; not using it", rec.Source, s.name)
		return nil
	case !known:
		s.log.Infof("policy source: the kept policy %s was verified with a key that is no longer configured (%s); not using it", rec.Digest, rec.Key)
		return nil
	}
	if err := s.store.check(rec.Digest); err != nil {
		s.log.WithError(err).Warnf("policy source: the kept policy %s is damaged on disk; not using it", rec.Digest)
		return nil
	}
	return rec
}

// resolve asks the registry which digest the source names (a HEAD of the
// tag; nothing for a digest).
func (s *Source) resolve(ctx context.Context) (string, error) {
	digest, err := s.reg.Resolve(ctx, s.ref.String())
	switch {
	case err == nil:
		return digest, nil
	case registry.IsNotFound(err):
		return "", fmt.Errorf("%s does not exist at the registry", s.name)
	default:
		return "", fmt.Errorf("cannot reach %s (%s)", s.name, registry.Unreachable(err))
	}
}

// fetch verifies digest's signature, then downloads, checks and unpacks
// the artifact. Nothing it names is read before its signature is verified.
func (s *Source) fetch(ctx context.Context, digest string) (record, error) {
	if why, ok := s.bad[digest]; ok {
		return record{}, refusedf("artifact %s refused: %s", digest, why)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	res := s.sigs.Verify(ctx, s.ref.Context().Name(), digest, s.keys)
	switch res.Status {
	case policy.SignatureVerified:
	case policy.SignatureUnverifiable:
		return record{}, fmt.Errorf("cannot verify artifact %s: %s", digest, res.Reason)
	default:
		// Not remembered as bad: a signature may be pushed after the
		// artifact (pullguard policy push, then cosign sign).
		return record{}, refusedf("artifact %s refused: %s", digest, res.Reason)
	}
	files, raw, err := s.download(ctx, digest)
	if err != nil {
		if errors.Is(err, errMalformed) {
			s.bad[digest] = err.Error()
			return record{}, refusedf("artifact %s refused: %v", digest, err)
		}
		return record{}, fmt.Errorf("cannot download artifact %s: %w", digest, err)
	}
	if err := s.store.unpack(digest, raw, files); err != nil {
		return record{}, fmt.Errorf("cannot unpack artifact %s into %s: %w", digest, s.store.dir, err)
	}
	return record{Source: s.name, Digest: digest, Key: res.Key.Fingerprint, Fetched: time.Now()}, nil
}

func (s *Source) download(ctx context.Context, digest string) ([]file, []byte, error) {
	opts := s.reg.Options(ctx)
	repo := s.ref.Context()
	desc, err := remote.Get(repo.Digest(digest), opts...)
	if err != nil {
		return nil, nil, err
	}
	m, err := parseManifest(desc.Manifest, digest)
	if err != nil {
		return nil, nil, err
	}
	files := make([]file, len(m.Layers))
	for i, l := range m.Layers {
		layer, err := remote.Layer(repo.Digest(l.Digest.String()), opts...)
		if err != nil {
			return nil, nil, err
		}
		rc, err := layer.Compressed()
		if err != nil {
			return nil, nil, err
		}
		data, err := readBlob(rc, l)
		rc.Close()
		if err != nil {
			return nil, nil, err
		}
		files[i] = file{path: l.Annotations[titleAnnotation], data: data}
	}
	return files, desc.Manifest, nil
}

// commit records rec as the artifact in force and removes the others.
func (s *Source) commit(rec record) {
	if err := s.store.writeRecord(rec); err != nil {
		s.log.WithError(err).Error("policy source: cannot record the policy in force in the state directory; a restart without the registry would not find it")
	}
	if err := s.store.prune(rec.Digest); err != nil {
		s.log.WithError(err).Warn("policy source: cannot remove older artifacts from the state directory")
	}
}

// checked notes a check's outcome: metrics, and a journal entry for a
// failure, written once while the same failure repeats.
func (s *Source) checked(err error, refused string) {
	s.obs.PolicySourceChecked(err)
	select {
	case s.checkEnd <- struct{}{}:
	default: // one pending is enough: the status line is written from the latest
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkOK = err == nil
	if err == nil {
		if s.lastErr != "" {
			s.log.WithFields(logrus.Fields{daemon.FieldPolicySource: s.name, daemon.FieldPolicyDigest: s.cur.Digest}).
				Infof("policy source %s checked again successfully", s.name)
		}
		s.lastErr = ""
		return
	}
	lvl := logrus.WarnLevel
	var r *refusal
	if errors.As(err, &r) {
		lvl = logrus.ErrorLevel
	}
	if err.Error() == s.lastErr {
		lvl = logrus.DebugLevel
	}
	s.lastErr = err.Error()
	f := logrus.Fields{
		daemon.FieldMessageID:    daemon.MessageIDPolicySourceFailed,
		daemon.FieldPolicySource: s.name,
		daemon.FieldPolicyDigest: s.cur.Digest,
		daemon.FieldError:        err.Error(),
	}
	if refused != "" && refused != s.cur.Digest {
		f[daemon.FieldRefusedDigest] = refused
	}
	s.log.WithFields(f).Logf(lvl, "policy source %s: %v; keeping the policy in force (artifact %s, fetched %s)",
		s.name, err, s.cur.Digest, s.cur.Fetched.UTC().Format(time.RFC3339))
}

// Warnings say, for the daemon's status line, that the policy in force
// may not be the source's latest.
func (s *Source) Warnings() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checkOK {
		return nil
	}
	return []string{fmt.Sprintf("policy source %s: %s; enforcing the last verified policy, artifact %s fetched %s",
		s.name, s.lastErr, s.cur.Digest, s.cur.Fetched.UTC().Format(time.RFC3339))}
}

// Run checks the source every interval until ctx is done, and hands each
// new verified artifact to load, which puts it in force or says why not.
func (s *Source) Run(ctx context.Context, load func(path string, origin logrus.Fields) error) error {
	t := time.NewTimer(s.wait())
	defer t.Stop()
	for {
		var done chan struct{}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case done = <-s.checkNow:
		}
		s.poll(ctx, load)
		if done != nil {
			close(done)
		}
		t.Reset(s.wait())
	}
}

var _ daemon.FeedChecks = (*Source)(nil)

// CheckNow has Run check the source at once (a reload request) and waits
// until it has, or ctx is done.
func (s *Source) CheckNow(ctx context.Context) {
	done := make(chan struct{})
	select {
	case s.checkNow <- done:
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Checked receives a value after each check of the source.
func (s *Source) Checked() <-chan struct{} { return s.checkEnd }

// wait is the interval less up to a tenth at random: never longer than
// the interval, and hosts drift apart.
func (s *Source) wait() time.Duration {
	return s.interval - rand.N(s.interval/10+1)
}

func (s *Source) poll(ctx context.Context, load func(string, logrus.Fields) error) {
	digest, err := s.resolve(ctx)
	if err != nil {
		s.checked(err, "")
		return
	}
	s.mu.Lock()
	unchanged := digest == s.cur.Digest
	s.mu.Unlock()
	if unchanged {
		s.checked(nil, "")
		return
	}
	rec, err := s.fetch(ctx, digest)
	if err != nil {
		s.checked(err, digest)
		return
	}
	// The source was read and the artifact verified: the check
	// succeeded, and the status line the reload writes says so.
	s.checked(nil, "")
	if err := load(s.store.mainFile(digest), origin(rec)); err != nil {
		// The watcher logged the policy's problems.
		s.bad[digest] = "its policy does not load (see the policy entry)"
		_ = s.store.prune(s.cur.Digest)
		s.checked(refusedf("artifact %s refused: %s", digest, s.bad[digest]), digest)
		return
	}
	s.commit(rec)
	s.inForce(rec, false)
}

type nopObserver struct{}

func (nopObserver) PolicySourceInForce(string, string, time.Time, bool) {}
func (nopObserver) PolicySourceChecked(error)                           {}
