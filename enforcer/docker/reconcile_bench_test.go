package docker

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/policy"
)

// BenchmarkReconcileContainerdStore: a reconcile of 1,000 images on
// dockerd's containerd image store under local-images: deny, the
// registry's answers already known (every reconcile after the first within
// the hour): what provenance costs a resync on Docker 29.
func BenchmarkReconcileContainerdStore(b *testing.B) {
	p, err := policy.Parse(policy.Source{Name: "policy.yaml", Data: []byte("mode: enforce\nlocal-images: deny\nallow:\n  - image: reg.example/approved/**\n")})
	if err != nil {
		b.Fatal(err)
	}
	f := newFake()
	f.c8d = true
	reg := enforcertest.NewRegistry()
	for i := range 1000 {
		repo := fmt.Sprintf("reg.example/approved/app%d", i)
		f.addImage(id(i+1), repo+":1")
		reg.Serve(repo, id(i+1))
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	rec := &enforcertest.Recorder{}
	g := New(f, enforcertest.NewPolicies(p), rec, log, benchEvidence(reg, log))
	ctx := context.Background()
	if err := g.reconcile(ctx, "warm"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := g.reconcile(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	if n := len(rec.Records()); n != 0 {
		b.Fatalf("%d records; every image is pulled content", n)
	}
}

func benchEvidence(reg provenance.Registry, log logrus.FieldLogger) Option {
	return WithEvidence(evidence.New(nil, provenance.New(reg), log))
}
