// Command image writes pullguard's container image as a tarball that
// `docker load` and `ctr image import` read, without a container engine and
// without a base image: one layer holding the static binary and the CA
// certificates, nothing else. `make image` runs it.
//
//	go run ./deploy/image -binary bin/pullguard -ca /etc/ssl/certs/ca-certificates.crt \
//	    -tag pullguard/pullguard:1.2.3 -o dist/pullguard-image.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

func main() {
	var o Options
	var out, epoch string
	flag.StringVar(&o.Binary, "binary", "bin/pullguard", "the static pullguard binary")
	flag.StringVar(&o.CACerts, "ca", "/etc/ssl/certs/ca-certificates.crt", "the CA certificate bundle to ship")
	flag.StringVar(&o.TrustedRoot, "trusted-root", "packaging/trusted_root.json", "the Sigstore trusted root to ship")
	flag.StringVar(&o.Tag, "tag", "pullguard/pullguard:dev", "the image's name")
	flag.StringVar(&o.Version, "version", "dev", "pullguard's version, for the image's labels")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "the binary's architecture")
	flag.StringVar(&out, "o", "dist/pullguard-image.tar", "where to write the tarball")
	flag.StringVar(&epoch, "source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "timestamp of every file and of the image, for reproducible builds (default 0)")
	flag.Parse()
	if epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "image: -source-date-epoch:", err)
			os.Exit(2)
		}
		o.Created = time.Unix(sec, 0).UTC()
	}
	if err := Write(out, o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Println(out)
}
