// Command nrifloor is the least an NRI plugin can be: its own process,
// registered with containerd for CreateContainer, answering every container
// with no adjustment and without looking at it. The NRI benchmark measures
// pullguard's plugin against it. It prints "registered" once containerd has
// taken it in, and exits when containerd closes the connection.
// Usage: nrifloor SOCKET
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

// floor subscribes to CreateContainer only (the stub subscribes to what a
// plugin implements), as pullguard does.
type floor struct{}

func (floor) CreateContainer(context.Context, *api.PodSandbox, *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	return nil, nil, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: nrifloor SOCKET")
		os.Exit(2)
	}
	// Index 10, as pullguard's: the same place among plugins.
	s, err := stub.New(floor{}, stub.WithPluginName("nrifloor"), stub.WithPluginIdx("10"), stub.WithSocketPath(os.Args[1]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := s.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("registered")
	s.Wait()
	fmt.Fprintln(os.Stderr, "containerd closed the connection")
	os.Exit(1)
}
