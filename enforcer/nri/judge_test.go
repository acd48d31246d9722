package nri

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/pullguard/pullguard/enforcer"
	cdguard "github.com/pullguard/pullguard/enforcer/containerd"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

const (
	goodDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	evilDigest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func mustPolicy(t testing.TB, mode policy.Mode, local policy.LocalImages) *policy.Policy {
	t.Helper()
	src := fmt.Sprintf("mode: %s\nlocal-images: %s\ndefault: deny\nallow:\n  - image: localhost:5000/good/**\n", mode, local)
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte(src)})
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return p
}

// fakeImages is containerd's image store of one namespace.
type fakeImages struct {
	ns   string
	recs []cdguard.Image
	err  error
}

func (f *fakeImages) Image(_ context.Context, ns, name string) (cdguard.Image, error) {
	if f.err != nil {
		return cdguard.Image{}, f.err
	}
	for _, r := range f.recs {
		if ns == f.ns && r.Name == name {
			return r, nil
		}
	}
	return cdguard.Image{}, errdefs.ErrNotFound
}

func (f *fakeImages) ImagesByTarget(_ context.Context, ns, digest string) ([]cdguard.Image, error) {
	if f.err != nil {
		return nil, f.err
	}
	var out []cdguard.Image
	for _, r := range f.recs {
		if ns == f.ns && r.Target == digest {
			out = append(out, r)
		}
	}
	return out, nil
}

type setup struct {
	plugin *Plugin
	rec    *enforcertest.Recorder
	reg    *enforcertest.Registry
}

func newPlugin(t testing.TB, p *policy.Policy, images Images) setup {
	t.Helper()
	reg := enforcertest.NewRegistry([2]string{"localhost:5000/good/app", goodDigest})
	log, _ := test.NewNullLogger()
	rec := &enforcertest.Recorder{}
	judge := evidence.New(nil, provenance.New(reg), log)
	return setup{New("/nonexistent", enforcertest.NewPolicies(p), images, judge, rec, log), rec, reg}
}

func container(name, digest string) *api.Container {
	c := &api.Container{Id: "c1", Name: "app"}
	if name != "" || digest != "" {
		c.Image = &api.Image{Name: name, Digest: digest}
	}
	return c
}

func create(t *testing.T, s setup, c *api.Container) error {
	t.Helper()
	adj, upd, err := s.plugin.CreateContainer(context.Background(), &api.PodSandbox{}, c)
	if adj != nil || upd != nil {
		t.Errorf("CreateContainer adjusted the container (%v, %v); pullguard only admits or refuses", adj, upd)
	}
	return err
}

func TestCreateContainerVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name       string
		mode       policy.Mode
		local      policy.LocalImages
		image      string
		digest     string
		wantRefuse string // substring of the refusal; empty: admitted
		wantAction enforcer.Action
	}{
		{name: "allowed name", mode: policy.ModeEnforce, local: policy.LocalImagesAllow,
			image: "localhost:5000/good/app:1", digest: evilDigest},
		{name: "denied name", mode: policy.ModeEnforce, local: policy.LocalImagesAllow,
			image: "localhost:5000/evil/miner:1", digest: evilDigest,
			wantRefuse: "pullguard: localhost:5000/evil/miner:1@" + evilDigest + " is not allowed: no allow rule matches", wantAction: enforcer.Blocked},
		{name: "denied in audit mode", mode: policy.ModeAudit, local: policy.LocalImagesAllow,
			image: "localhost:5000/evil/miner:1", digest: evilDigest, wantAction: enforcer.WouldBlock},
		{name: "allowed name, content the repository serves", mode: policy.ModeEnforce, local: policy.LocalImagesDeny,
			image: "localhost:5000/good/app:1", digest: goodDigest},
		// Imported with ctr under an allowed name: the repository never
		// served this content.
		{name: "allowed name, content from elsewhere", mode: policy.ModeEnforce, local: policy.LocalImagesDeny,
			image: "localhost:5000/good/app:1", digest: evilDigest,
			wantRefuse: "pullguard: localhost:5000/good/app:1", wantAction: enforcer.Blocked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newPlugin(t, mustPolicy(t, tc.mode, tc.local), nil)
			err := create(t, s, container(tc.image, tc.digest))
			switch {
			case tc.wantRefuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantRefuse != "" && (err == nil || !strings.Contains(err.Error(), tc.wantRefuse)):
				t.Fatalf("err = %v, want a refusal containing %q", err, tc.wantRefuse)
			}
			recs := s.rec.Records()
			if tc.wantAction == "" {
				if len(recs) != 0 {
					t.Fatalf("journaled %+v for an admitted container", recs)
				}
				return
			}
			if len(recs) != 1 {
				t.Fatalf("records = %+v, want one", recs)
			}
			r := recs[0]
			if r.Action != tc.wantAction || r.Runtime != enforcer.RuntimeContainerd || r.Event != "nri" ||
				r.Namespace != "k8s.io" || r.ContainerID != "c1" || r.Image != tc.image || r.ImageID != tc.digest || r.Decision.Reason == "" {
				t.Errorf("record = %+v", r)
			}
			if err != nil && !strings.Contains(err.Error(), r.Decision.Reason) {
				t.Errorf("refusal %q does not give the journaled reason %q", err, r.Decision.Reason)
			}
		})
	}
}

// A verdict the evidence already settled is answered without asking the
// registry again: CreateContainer is on containerd's clock.
func TestCreateContainerAnswersFromCache(t *testing.T) {
	s := newPlugin(t, mustPolicy(t, policy.ModeEnforce, policy.LocalImagesDeny), nil)
	c := container("localhost:5000/good/app:1", goodDigest)
	if err := create(t, s, c); err != nil {
		t.Fatal(err)
	}
	asked := s.reg.Asks()
	if asked == 0 {
		t.Fatal("the registry was never asked where the content came from")
	}
	s.reg.SetDown(true) // a hit must not need it
	for range 3 {
		if err := create(t, s, c); err != nil {
			t.Fatalf("second create refused: %v", err)
		}
	}
	if s.reg.Asks() != asked {
		t.Errorf("registry asked %d times, want %d: a known verdict was asked again", s.reg.Asks(), asked)
	}
}

// Undecided is not admitted: a registry that does not answer refuses the
// container, journaled as failed, and the refusal says why.
func TestCreateContainerUndecidedIsRefused(t *testing.T) {
	s := newPlugin(t, mustPolicy(t, policy.ModeEnforce, policy.LocalImagesDeny), nil)
	s.reg.SetDown(true)
	err := create(t, s, container("localhost:5000/good/app:1", goodDigest))
	t.Logf("refusal: %v", err)
	if err == nil || !strings.Contains(err.Error(), "could not decide") {
		t.Fatalf("err = %v, want a refusal saying the policy could not decide", err)
	}
	recs := s.rec.Records()
	if len(recs) != 1 || recs[0].Action != enforcer.Failed || recs[0].Err == nil {
		t.Fatalf("records = %+v, want one failed", recs)
	}
}

// What containerd leaves out is looked up in CRI's namespace; what cannot
// be found is refused, saying which.
func TestCreateContainerLooksUpMissingParts(t *testing.T) {
	images := &fakeImages{ns: "k8s.io", recs: []cdguard.Image{
		{Name: "localhost:5000/good/app:1", Target: goodDigest},
		{Name: "localhost:5000/evil/miner:1", Target: evilDigest},
	}}
	p := mustPolicy(t, policy.ModeEnforce, policy.LocalImagesAllow)
	for _, tc := range []struct {
		name, image, digest string
		images              Images
		wantRefuse          string
	}{
		{name: "no digest, allowed", image: "localhost:5000/good/app:1", images: images},
		{name: "no name, allowed", digest: goodDigest, images: images},
		{name: "no name, denied", digest: evilDigest, images: images, wantRefuse: "localhost:5000/evil/miner:1@" + evilDigest + " is not allowed"},
		{name: "no image at all", images: images, wantRefuse: "containerd named no image for the container"},
		{name: "no record of the name", image: "localhost:5000/good/gone:1", images: images,
			wantRefuse: "image localhost:5000/good/gone:1 is not in containerd namespace k8s.io"},
		{name: "no record of the digest", digest: "sha256:" + strings.Repeat("3", 64), images: images,
			wantRefuse: "no image record in containerd namespace k8s.io points at sha256:333"},
		{name: "containerd fails", image: "localhost:5000/good/app:1", images: &fakeImages{err: fmt.Errorf("connection refused")},
			wantRefuse: "could not judge the image: looking up image localhost:5000/good/app:1 in containerd namespace k8s.io: connection refused"},
		{name: "no client", image: "localhost:5000/good/app:1", wantRefuse: "no containerd client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newPlugin(t, p, tc.images)
			err := create(t, s, container(tc.image, tc.digest))
			if tc.wantRefuse == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantRefuse) {
				t.Fatalf("err = %v, want a refusal containing %q", err, tc.wantRefuse)
			}
		})
	}
}

func TestCreateContainerWithoutPolicy(t *testing.T) {
	log, _ := test.NewNullLogger()
	plugin := New("/nonexistent", enforcertest.NewPolicies(nil), nil, nil, &enforcertest.Recorder{}, log)
	if _, _, err := plugin.CreateContainer(context.Background(), nil, container("localhost:5000/good/app:1", goodDigest)); err == nil {
		t.Fatal("admitted a container with no policy loaded")
	}
}
