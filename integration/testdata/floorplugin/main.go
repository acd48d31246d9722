// Command floorplugin is the least a Docker authorization plugin can be:
// its own process, allowing every request without reading it. The
// authorization benchmark builds it as a baseline. Usage: floorplugin SOCKET
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/pullguard/pullguard/integration/internal/floorplugin"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: floorplugin SOCKET")
		os.Exit(2)
	}
	l, err := net.Listen("unix", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, http.Serve(l, floorplugin.Handler()))
	os.Exit(1)
}
