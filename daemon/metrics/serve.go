package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/netutil"
)

// DefaultTextfileInterval is how often the textfile is rewritten.
const DefaultTextfileInterval = 5 * time.Second

// DefaultStatusSocket is where the daemon serves its status.
const DefaultStatusSocket = "/run/pullguard/status.sock"

// Handler serves the registry in Prometheus' exposition formats,
// uncompressed: the page is a few kilobytes, and a gzip writer (which
// Prometheus would ask for) costs the idle daemon far more memory than the
// bytes it saves.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, DisableCompression: true})
}

// ServeHTTP serves /metrics on l until ctx is done.
func (m *Metrics) ServeHTTP(ctx context.Context, l net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	return serve(ctx, l, mux)
}

// ListenStatus creates the root-only status socket at path: any stale
// socket is replaced, and the socket is mode 0600 before anyone can
// connect (it is created under a umask that allows nothing else).
func ListenStatus(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	// A unix socket is connected to with write permission on it: with
	// the usual umasks (022, systemd's 077 here) only root can from the
	// start, and the chmod below makes it so whatever the umask.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// ServeStatus serves the status snapshot (GET /status, JSON) and the
// metrics (GET /metrics) on l until ctx is done.
func (m *Metrics) ServeStatus(ctx context.Context, l net.Listener, version string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m.Snapshot(version))
	})
	mux.Handle("GET /metrics", m.Handler())
	return serve(ctx, l, mux)
}

// Limits of the metrics endpoint and the status socket. A scraper needs one
// connection and a few hundred bytes of header, and answers within seconds;
// whoever opens thousands of idle connections (the metrics port is TCP)
// must not spend the file descriptors that the authorization plugin's
// socket, the runtime connections and the journal need. Connections beyond
// MaxConnections wait in the kernel's accept queue, costing the daemon
// nothing; a connection that sends no complete header within
// ReadHeaderTimeout, or stays idle between requests for idleTimeout, is
// closed.
const (
	MaxConnections    = 16
	ReadHeaderTimeout = 5 * time.Second
	idleTimeout       = 30 * time.Second
	// writeTimeout bounds a scrape a client reads too slowly.
	writeTimeout   = 30 * time.Second
	maxHeaderBytes = 8 << 10
)

func serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       idleTimeout,
		WriteTimeout:      writeTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	l = netutil.LimitListener(l, MaxConnections)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return err
}

// RunTextfile writes pullguard's series to path in node_exporter's
// textfile-collector format every interval (0: DefaultTextfileInterval)
// until ctx is done, and once more then. Each write goes to a temporary
// file beside path that is renamed over it, so node_exporter never reads
// half a file. Only pullguard_* series are written: node_exporter exports
// its own go_* and process_* series and would reject duplicates.
func (m *Metrics) RunTextfile(ctx context.Context, path string, interval time.Duration, onError func(error)) error {
	if interval <= 0 {
		interval = DefaultTextfileInterval
	}
	write := func() {
		if err := m.WriteTextfile(path); err != nil && onError != nil {
			onError(err)
		}
	}
	write()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			write()
		case <-ctx.Done():
			write()
			return nil
		}
	}
}

// WriteTextfile writes the textfile once (see RunTextfile).
func (m *Metrics) WriteTextfile(path string) error {
	return prometheus.WriteToTextfile(path, pullguardOnly{m.reg})
}

// pullguardOnly gathers only the pullguard_* families.
type pullguardOnly struct{ g prometheus.Gatherer }

func (p pullguardOnly) Gather() ([]*dto.MetricFamily, error) {
	all, err := p.g.Gather()
	out := all[:0]
	for _, f := range all {
		if strings.HasPrefix(f.GetName(), "pullguard_") {
			out = append(out, f)
		}
	}
	return out, err
}
