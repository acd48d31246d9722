// Package nri refuses a disallowed container before it is created, as an
// external plugin of containerd's NRI (Node Resource Interface): containerd's
// CRI asks every plugin about each container it creates, and one that
// answers with an error stops the creation, the error returned to the
// kubelet or crictl. This is the start-time check for images that are
// already on the node, which the image verifier (asked at pulls only) never
// saw: imported with `ctr -n k8s.io images import`, pulled while the verifier
// was skipped, allowed under an earlier policy.
//
// Each container is judged with the one verdict (policy.Judge) on the image
// name and digest containerd hands over, the same verdict as every other
// path. NRI sees CRI's containers only: `ctr run` and other containerd
// clients create containers without it (the containerd guard removes those).
package nri

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/evidence"
)

// PluginName is the name pullguard registers under: the one an operator
// lists in containerd's `required_plugins`.
const PluginName = "pullguard"

// pluginIndex orders pullguard among NRI plugins; its answer does not
// depend on theirs.
const pluginIndex = "10"

// Event is PULLGUARD_EVENT of what the plugin journals.
const Event = "nri"

// DefaultNamespace is the containerd namespace CRI keeps its images in,
// where an image containerd did not fully name is looked up.
const DefaultNamespace = "k8s.io"

// Reconnection backoff: containerd restarts take seconds.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// Plugin is pullguard's NRI plugin, run as one of the daemon's components.
type Plugin struct {
	socket    string
	namespace string
	policies  enforcer.PolicySource
	images    Images
	judge     *evidence.Judge
	rep       enforcer.Reporter
	log       logrus.FieldLogger
	observer  enforcer.Observer // nil: none
	now       func() time.Time
	ready     chan struct{}
}

// ObserverName is the runtime name the plugin's connection is reported
// under (pullguard_runtime_connected, the status line).
const ObserverName = "containerd-nri"

// Option configures a Plugin.
type Option func(*Plugin)

// WithNamespace sets the containerd namespace CRI keeps its images in
// (default DefaultNamespace).
func WithNamespace(ns string) Option { return func(p *Plugin) { p.namespace = ns } }

// WithObserver has obs told when the plugin registers with containerd and
// when it loses the connection.
func WithObserver(obs enforcer.Observer) Option { return func(p *Plugin) { p.observer = obs } }

// New returns the plugin for the NRI socket; images (nil: none) names
// images containerd leaves unnamed, judge answers evidence questions.
func New(socket string, policies enforcer.PolicySource, images Images, judge *evidence.Judge, rep enforcer.Reporter, log logrus.FieldLogger, opts ...Option) *Plugin {
	p := &Plugin{socket: socket, namespace: DefaultNamespace, policies: policies, images: images, judge: judge,
		rep: rep, log: log.WithField(enforcer.FieldRuntime, enforcer.RuntimeContainerd), now: time.Now, ready: make(chan struct{})}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Name is the component's name in logs and the status line.
func (p *Plugin) Name() string { return ObserverName }

// RequestReconcile does nothing: each container is judged as it is
// created, under the policy in force then.
func (p *Plugin) RequestReconcile() {}

// FirstPass is closed once the first connection attempt is over.
func (p *Plugin) FirstPass() <-chan struct{} { return p.ready }

// Run connects to containerd's NRI socket and serves until ctx is done,
// reconnecting with backoff whenever containerd goes away.
func (p *Plugin) Run(ctx context.Context) error {
	backoff := minBackoff
	first, warned := true, false
	firstOver := func() {
		if first {
			close(p.ready)
			first = false
		}
	}
	for {
		started := time.Now()
		err := p.serve(ctx, func() {
			p.log.WithField(enforcer.FieldMessageID, enforcer.MessageIDRuntimeConnected).
				Infof("NRI: registered with containerd as plugin %q on %s; every CRI container is judged before it is created", PluginName, p.socket)
			firstOver()
			warned = false
			p.connected(true)
		})
		if ctx.Err() != nil {
			return nil
		}
		firstOver()
		if time.Since(started) > maxBackoff {
			backoff = minBackoff // it was connected a while: containerd restarted
		}
		// Once an outage: retries until containerd is back are logged at debug.
		entry := p.log.WithError(err)
		msg := "NRI: not connected to containerd on %s; retrying in %s (until then CRI containers are created unjudged, " +
			"unless pullguard is in containerd's required_plugins: then they are not created)"
		if warned {
			entry.Debugf(msg, p.socket, backoff)
		} else {
			entry.WithField(enforcer.FieldMessageID, enforcer.MessageIDRuntimeDisconnected).Warnf(msg, p.socket, backoff)
			warned = true
			p.connected(false)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (p *Plugin) connected(up bool) {
	if p.observer != nil {
		p.observer.Connected(ObserverName, up)
	}
}

// serve is one connection: it returns when containerd closes it or ctx is
// done. connected is called once registered.
func (p *Plugin) serve(ctx context.Context, connected func()) error {
	s, err := stub.New(p, stub.WithPluginName(PluginName), stub.WithPluginIdx(pluginIndex),
		stub.WithSocketPath(p.socket), stub.WithLogger(nriLogger{p.log}))
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return fmt.Errorf("registering with NRI: %w", err)
	}
	connected()
	done := make(chan struct{})
	go func() { s.Wait(); close(done) }()
	select {
	case <-ctx.Done():
		s.Stop()
		return nil
	case <-done:
		return errors.New("containerd closed the NRI connection")
	}
}

// CreateContainer is NRI's question: an error refuses the container, and
// CRI returns it to whoever asked (kubelet, crictl).
func (p *Plugin) CreateContainer(ctx context.Context, _ *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	ctx, cancel := context.WithTimeout(ctx, requestBudget)
	defer cancel()
	d := p.decide(ctx, ctr)
	if d.record != nil {
		p.rep.Report(*d.record)
	}
	return nil, nil, d.refuse
}

// nriLogger routes the NRI library's logs into pullguard's.
type nriLogger struct{ log logrus.FieldLogger }

func (l nriLogger) Debugf(_ context.Context, f string, a ...any) { l.log.Debugf("NRI: "+f, a...) }
func (l nriLogger) Infof(_ context.Context, f string, a ...any)  { l.log.Debugf("NRI: "+f, a...) }
func (l nriLogger) Warnf(_ context.Context, f string, a ...any)  { l.log.Warnf("NRI: "+f, a...) }
func (l nriLogger) Errorf(_ context.Context, f string, a ...any) { l.log.Errorf("NRI: "+f, a...) }
