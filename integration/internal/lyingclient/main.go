// Command lyingclient is the attacker of the end-to-end tests: a small
// containerd client, as anyone with the containerd socket can write, that
// runs content the policy denies under a name it allows.
//
// It pulls -pull client-side (no transfer service, so containerd 2.x's
// image verifier is not asked) under a lease that keeps the content and its
// unpacked snapshots whatever happens to the image record, creates container
// -id with a snapshot of that content, its Image field set to -image (or,
// with -cri-label, an empty Image and CRI's io.kubernetes.cri.image-name
// label set to it), then creates and starts its task at once. It prints
// what happened as one JSON object and exits 0 whether or not the guard
// stopped it; it fails only when it could not even try.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/image-spec/identity"
)

// Result is what the client prints.
type Result struct {
	Lease       string `json:"lease"`       // the lease that keeps the content
	Chain       string `json:"chain"`       // chain ID of the pulled content
	Container   bool   `json:"container"`   // the container was created
	TaskCreated bool   `json:"taskCreated"` // its task was created
	TaskStarted bool   `json:"taskStarted"` // and started
	Pid         uint32 `json:"pid"`         // the task's process, once created
	Err         string `json:"err,omitempty"`
	// StartedAt is when Start returned (RFC 3339, nanoseconds), for the benchmark.
	StartedAt string `json:"startedAt,omitempty"`
}

func main() {
	address := flag.String("address", "/run/containerd/containerd.sock", "containerd socket")
	ns := flag.String("namespace", "default", "containerd namespace")
	pull := flag.String("pull", "", "reference of the content to run (pulled over plain HTTP from localhost)")
	image := flag.String("image", "", "the image name the container claims")
	criLabel := flag.Bool("cri-label", false, "leave Image empty and claim the image in CRI's label instead")
	id := flag.String("id", "", "container ID")
	arg := flag.String("arg", "3600", "argument of the container's sleep")
	flag.Parse()
	if *pull == "" || *image == "" || *id == "" {
		fmt.Fprintln(os.Stderr, "usage: lyingclient -address SOCK -namespace NS -pull REF -image NAME -id ID [-cri-label]")
		os.Exit(2)
	}
	res, err := run(*address, *ns, *pull, *image, *id, *arg, *criLabel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lyingclient:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

func run(address, ns, ref, claim, id, arg string, criLabel bool) (Result, error) {
	var res Result
	c, err := client.New(address)
	if err != nil {
		return res, err
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	// A lease outlives this process: content and snapshots stay when the
	// guard deletes the image record.
	l, err := c.LeasesService().Create(ctx, leases.WithRandomID(), leases.WithExpiration(2*time.Hour))
	if err != nil {
		return res, fmt.Errorf("lease: %w", err)
	}
	ctx = leases.WithLease(ctx, l.ID)
	res.Lease = l.ID
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost)),
	})
	img, err := c.Pull(ctx, ref, client.WithPullUnpack, client.WithResolver(resolver))
	if err != nil {
		return res, fmt.Errorf("pull %s: %w", ref, err)
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return res, fmt.Errorf("layers of %s: %w", ref, err)
	}
	res.Chain = identity.ChainID(diffIDs).String()

	opts := []client.NewContainerOpts{
		client.WithNewSnapshot(id+"-rootfs", img),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sleep", arg)),
	}
	if criLabel {
		// As CRI leaves it: no Image (WithNewSnapshot wrote the pulled name there).
		opts = append(opts, client.WithContainerLabels(map[string]string{"io.kubernetes.cri.image-name": claim}),
			func(_ context.Context, _ *client.Client, c *containers.Container) error {
				c.Image = ""
				return nil
			})
	} else {
		opts = append(opts, client.WithImageName(claim))
	}
	ctr, err := c.NewContainer(ctx, id, opts...)
	if err != nil {
		res.Err = "container: " + err.Error()
		return res, nil
	}
	res.Container = true
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		res.Err = "task: " + err.Error()
		return res, nil
	}
	res.TaskCreated, res.Pid = true, task.Pid()
	if err := task.Start(ctx); err != nil {
		res.Err = "start: " + err.Error()
		return res, nil
	}
	res.TaskStarted, res.StartedAt = true, time.Now().Format(time.RFC3339Nano)
	return res, nil
}
