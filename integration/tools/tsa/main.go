// Command tsa runs sigstore's timestamp authority for the integration
// tests: its own REST API (pkg/server, as timestamp-server serve builds
// it) with an in-memory signer on the loopback address it is given. Not
// the released timestamp-server command: that one also serves metrics on
// :2112 of every interface, which two test runs on one machine (or
// anything else there) fight over, and it exits when it loses.
//
//	tsa 127.0.0.1:PORT
package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/sigstore/timestamp-authority/v2/pkg/server"
	"github.com/spf13/viper"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tsa 127.0.0.1:PORT")
		os.Exit(2)
	}
	host, p, err := net.SplitHostPort(os.Args[1])
	if err != nil {
		fail(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		fail(err)
	}
	// timestamp-server's defaults for what its API reads.
	for k, v := range map[string]any{
		"timestamp-signer":         "memory",
		"timestamp-signer-hash":    "sha256",
		"max-request-body-size":    1 << 20,
		"default-policy-oid":       "1.3.6.1.4.1.57264.2",
		"accepted-policy-oids":     []string{"1.3.6.1.4.1.57264.2"},
		"enforce-intermediate-eku": true,
	} {
		viper.Set(k, v)
	}
	srv := server.NewRestAPIServer(host, port, []string{"http"}, false, 10*time.Second, 10*time.Second)
	defer func() { _ = srv.Shutdown() }()
	if err := srv.Serve(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tsa:", err)
	os.Exit(1)
}
