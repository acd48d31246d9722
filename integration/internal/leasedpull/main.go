// Command leasedpull is an attacker of the end-to-end tests: a small
// containerd client, as anyone with the containerd socket can write, that
// pulls an image under a lease of its own, so that its content and
// unpacked snapshots stay whatever happens to the image record.
//
// It pulls -pull client-side (over plain HTTP from localhost) with unpack,
// under a new lease (with -expire, containerd.io/gc.expire that far ahead;
// by default none, so containerd never drops it), leaves the lease, and
// prints the lease, the image's target digest and its chain ID as one JSON
// object.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/image-spec/identity"
)

// Result is what the client prints.
type Result struct {
	Lease  string `json:"lease"`
	Target string `json:"target"`
	Chain  string `json:"chain"`
}

func main() {
	address := flag.String("address", "/run/containerd/containerd.sock", "containerd socket")
	ns := flag.String("namespace", "default", "containerd namespace")
	pull := flag.String("pull", "", "reference to pull")
	expire := flag.Duration("expire", 0, "the lease's expiry (0: none)")
	flag.Parse()
	if *pull == "" {
		fmt.Fprintln(os.Stderr, "usage: leasedpull -address SOCK -namespace NS -pull REF [-expire D]")
		os.Exit(2)
	}
	res, err := run(*address, *ns, *pull, *expire)
	if err != nil {
		fmt.Fprintln(os.Stderr, "leasedpull:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

func run(address, ns, ref string, expire time.Duration) (Result, error) {
	c, err := client.New(address)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	opts := []leases.Opt{leases.WithRandomID()}
	if expire > 0 {
		opts = append(opts, leases.WithExpiration(expire))
	}
	l, err := c.LeasesService().Create(ctx, opts...)
	if err != nil {
		return Result{}, fmt.Errorf("lease: %w", err)
	}
	ctx = leases.WithLease(ctx, l.ID)
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost)),
	})
	img, err := c.Pull(ctx, ref, client.WithPullUnpack, client.WithResolver(resolver))
	if err != nil {
		return Result{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("layers of %s: %w", ref, err)
	}
	return Result{Lease: l.ID, Target: img.Target().Digest.String(), Chain: identity.ChainID(diffIDs).String()}, nil
}
