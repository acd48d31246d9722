package nri

import (
	"context"
	"testing"

	"github.com/containerd/nri/pkg/api"

	"github.com/pullguard/pullguard/policy"
)

// BenchmarkCreateContainer is pullguard's share of a container's creation
// on the NRI hot path (containerd gives a plugin 2 s): an allowed image
// judged on its name alone, and one whose provenance (local-images: deny)
// the evidence cache already holds, so no registry is asked.
func BenchmarkCreateContainer(b *testing.B) {
	for _, local := range []policy.LocalImages{policy.LocalImagesAllow, policy.LocalImagesDeny} {
		b.Run("local-images="+string(local), func(b *testing.B) {
			s := newPlugin(b, mustPolicy(b, policy.ModeEnforce, local), nil)
			c := container("localhost:5000/good/app:1", goodDigest)
			ctx, pod := context.Background(), &api.PodSandbox{}
			if _, _, err := s.plugin.CreateContainer(ctx, pod, c); err != nil {
				b.Fatal(err)
			}
			asked := s.reg.Asks()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.plugin.CreateContainer(ctx, pod, c); err != nil {
					b.Fatal(err)
				}
			}
			if s.reg.Asks() != asked {
				b.Fatalf("the registry was asked on the hot path (%d times)", s.reg.Asks()-asked)
			}
		})
	}
}
