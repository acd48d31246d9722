package main

import (
	"github.com/spf13/cobra"

	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/registry"
)

// registryFlags pace the daemon's requests to registries.
type registryFlags struct {
	qps   float64
	burst int
}

func (f *registryFlags) register(cmd *cobra.Command) {
	cmd.Flags().Float64Var(&f.qps, "registry-qps", registry.DefaultQPS, "requests a second to each registry (provenance and signature lookups), after a burst of --registry-burst; 0: no limit")
	cmd.Flags().IntVar(&f.burst, "registry-burst", registry.DefaultBurst, "requests sent to a registry at once before --registry-qps paces them")
}

// evidenceWiring is how the guards' judge reaches registries and where it
// keeps its verdicts across restarts.
type evidenceWiring struct {
	registry registry.Options
	verdicts *evidence.VerdictFile
}

func (f registryFlags) wiring(verdicts *evidence.VerdictFile) evidenceWiring {
	return evidenceWiring{registry: registry.Options{QPS: f.qps, Burst: f.burst}, verdicts: verdicts}
}
