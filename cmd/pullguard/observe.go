package main

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/pullguard/pullguard/daemon"
	"github.com/pullguard/pullguard/daemon/metrics"
	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/authz"
)

// observeFlags say where the daemon's metrics and status go. Metrics are
// off by default; the status socket is on (it is root-only and costs
// nothing until asked).
type observeFlags struct {
	listen       string
	textfile     string
	statusSocket string
}

func (f *observeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.listen, "metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9671); default off. The packaged unit has no network: see pullguard(8)")
	cmd.Flags().StringVar(&f.textfile, "metrics-textfile", "", "write Prometheus metrics to this file every 5 s in node_exporter's textfile format (e.g. /var/lib/prometheus/node-exporter/pullguard.prom); default off")
	cmd.Flags().StringVar(&f.statusSocket, "status-socket", metrics.DefaultStatusSocket, `serve the state "pullguard status" shows on this root-only unix socket; "none" turns it off`)
}

// observability runs the metrics outputs and the status socket beside the
// daemon.
type observability struct {
	m      *metrics.Metrics
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startObservability builds the metrics and starts what the flags ask for.
// A metrics address or textfile that cannot be used is an error (it was
// asked for); a status socket that cannot be created is only logged, as on
// a read-only /run in a container: the guard matters more than its status.
func startObservability(f observeFlags, rf runtimeFlags, log *logrus.Logger) (*observability, error) {
	var runtimes []string
	if rf.docker() {
		runtimes = append(runtimes, enforcer.RuntimeDocker)
	}
	if rf.containerd() {
		runtimes = append(runtimes, enforcer.RuntimeContainerd)
	}
	m := metrics.New(metrics.Options{
		Runtimes:      runtimes,
		AuthzVerdicts: []string{authz.VerdictAllowed, authz.VerdictBlocked, authz.VerdictError},
		Version:       buildVersion(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	o := &observability{m: m, cancel: cancel}
	run := func(name string, fn func(context.Context) error) {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			if err := fn(ctx); err != nil {
				log.WithError(err).Errorf("%s stopped", name)
			}
		}()
	}
	if f.listen != "" {
		l, err := net.Listen("tcp", f.listen)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("--metrics-listen: %w", err)
		}
		log.WithField("address", l.Addr().String()).Info("serving metrics")
		run("metrics endpoint", func(ctx context.Context) error { return m.ServeHTTP(ctx, l) })
	}
	if f.textfile != "" {
		if err := m.WriteTextfile(f.textfile); err != nil {
			cancel()
			return nil, fmt.Errorf("--metrics-textfile: %w", err)
		}
		var last string
		run("metrics textfile", func(ctx context.Context) error {
			return m.RunTextfile(ctx, f.textfile, 0, func(err error) {
				// Once per distinct error, not every 5 s.
				if err.Error() != last {
					last = err.Error()
					log.WithError(err).Error("writing the metrics textfile")
				}
			})
		})
	}
	if f.statusSocket != "" && f.statusSocket != "none" {
		l, err := metrics.ListenStatus(f.statusSocket)
		if err != nil {
			log.WithError(err).Warn("no status socket: pullguard status will not work")
		} else {
			run("status socket", func(ctx context.Context) error { return m.ServeStatus(ctx, l, buildVersion()) })
		}
	}
	log.AddHook(daemon.MetricsHook(m))
	return o, nil
}

// stop stops the outputs; the textfile is written a last time.
func (o *observability) stop() {
	o.cancel()
	o.wg.Wait()
}
