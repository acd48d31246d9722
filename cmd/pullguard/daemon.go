package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/pullguard/pullguard/daemon"
	"github.com/pullguard/pullguard/daemon/metrics"
	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/authz"
	cdguard "github.com/pullguard/pullguard/enforcer/containerd"
	dockerguard "github.com/pullguard/pullguard/enforcer/docker"
	"github.com/pullguard/pullguard/enforcer/dockerstore"
	"github.com/pullguard/pullguard/enforcer/evidence"
	"github.com/pullguard/pullguard/enforcer/prepull"
	"github.com/pullguard/pullguard/enforcer/provenance"
	"github.com/pullguard/pullguard/enforcer/registry"
	"github.com/pullguard/pullguard/enforcer/signature"
	"github.com/pullguard/pullguard/internal/residency"
)

// runtimeFlags say which runtimes to guard; "none" turns one off.
type runtimeFlags struct {
	dockerHost          string
	containerdAddress   string
	containerdNamespace []string
	containerdConfig    string
	nriSocket           nriSocketFlag
	undecidedGrace      time.Duration
}

func (f *runtimeFlags) register(cmd *cobra.Command) {
	f.registerDocker(cmd)
	cmd.Flags().StringVar(&f.containerdAddress, "containerd-address", "/run/containerd/containerd.sock", `containerd socket; "none" turns containerd off`)
	cmd.Flags().StringSliceVar(&f.containerdNamespace, "containerd-namespaces", nil, "containerd namespaces to guard (default: all, including ones created later)")
	cmd.Flags().StringVar(&f.containerdConfig, "containerd-config", prepull.DefaultConfigPath, "containerd's configuration (with its imports), read to warn when containerd will not refuse disallowed pulls before they happen")
	f.nriSocket.register(cmd)
	cmd.Flags().DurationVar(&f.undecidedGrace, "undecided-grace", evidence.DefaultGrace, "how long an image's provenance may stay undecided (no registry answers where it came from) before it is treated as not vouched for (0: not at all)")
}

// prePullWarnings says, at start and on every reload, when containerd will not run
// pullguard's verifier before a pull (see package prepull); nil when containerd is off.
func (f *runtimeFlags) prePullWarnings() func() []string {
	if !f.containerd() {
		return nil
	}
	return func() []string {
		var out []string
		for _, w := range prepull.Check(f.containerdConfig) {
			out = append(out, "containerd does not refuse disallowed pulls before they happen: "+w.String())
		}
		return out
	}
}

func (f *runtimeFlags) registerDocker(cmd *cobra.Command) {
	dockerDefault := os.Getenv("DOCKER_HOST")
	if dockerDefault == "" {
		dockerDefault = "unix:///var/run/docker.sock"
	}
	cmd.Flags().StringVar(&f.dockerHost, "docker-host", dockerDefault, `Docker Engine address, $DOCKER_HOST when set; "none" turns Docker off`)
}

func (f *runtimeFlags) docker() bool { return f.dockerHost != "none" && f.dockerHost != "" }
func (f *runtimeFlags) containerd() bool {
	return f.containerdAddress != "none" && f.containerdAddress != ""
}

type logFlags struct{ target, format, level string }

func (f *logFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.target, "log-target", daemon.LogTargetAuto, "where logs go: auto (journald when available), journald or stderr")
	cmd.Flags().StringVar(&f.format, "log-format", daemon.LogFormatText, "stderr log format: text or json")
	cmd.Flags().StringVar(&f.level, "log-level", "info", "log level: debug, info, warning, error")
}

func newDaemonCmd() *cobra.Command {
	var (
		pf         policyFlags
		rf         runtimeFlags
		lf         logFlags
		of         observeFlags
		sf         sourceFlags
		gf         registryFlags
		authzPath  string
		authzLabel string
		resync     time.Duration
		settle     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Guard the host's runtimes until stopped",
		Long: `daemon follows Docker's and containerd's events, judges every image and
container against the policy, and (in enforce mode) removes what it does not
allow; audit mode only logs. It reconciles at start, after every reconnect and
after every policy reload, reloads the policy when its files change or on
SIGHUP, and logs every decision that acts to journald.

With --authz-socket, or a socket passed by systemd (pullguard-authz.socket), it
also serves Docker's authorization plugin API and refuses disallowed pulls,
creates, tags and builds before they happen.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := daemon.NewLogger(lf.target, lf.format, lf.level)
			if err != nil {
				return usageError("%v", err)
			}
			var closers []func()
			defer func() {
				for _, c := range closers {
					c()
				}
			}()
			obs, err := startObservability(of, rf, log)
			if err != nil {
				return usageError("%v", err)
			}
			defer obs.stop()
			stopped := make(chan struct{})
			defer close(stopped)
			releaser := residency.NewReleaser(releaseQuiet)
			releasing, stopReleasing := context.WithCancel(context.Background())
			defer stopReleasing()
			verdicts := evidence.NewVerdictFile(sf.stateDir, log)
			factory := func(policies enforcer.PolicySource, rep enforcer.Reporter) ([]daemon.Guard, error) {
				obs.m.SetPolicy(policies)
				guards, err := buildGuards(rf, authzPath, authzLabel, policies, obs.m.Reporter(rep), obs.m, releaser.Busy, log, &closers, gf.wiring(verdicts))
				if err == nil {
					go releasePages(releasing, guards, releaser, log)
				}
				return guards, err
			}
			// The CLI owns the signals: SIGHUP (systemd's ExecReload) is a
			// reload request.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			reload := make(chan struct{})
			go func() {
				for {
					select {
					case <-hup:
					case <-stopped:
						return
					}
					select {
					case reload <- struct{}{}:
					case <-stopped:
						return
					}
				}
			}()
			cfg := daemon.Config{
				PolicyPath:     pf.path,
				LoadOptions:    pf.loadOptions(),
				Log:            log,
				Guards:         factory,
				Reload:         reload,
				ResyncInterval: resyncInterval(resync),
				Settle:         settleFlag(settle),
				SetupWarnings:  rf.prePullWarnings(),
				PolicyObserver: obs.m,
				Verdicts:       verdicts,
			}
			if err := sf.apply(cmd.Context(), pf, &cfg, obs.m, log); err != nil {
				return err
			}
			err = daemon.Run(cmd.Context(), cfg)
			if errors.Is(err, daemon.ErrStartup) {
				return &exitError{code: exitUsage, err: err}
			}
			return err
		},
	}
	pf.register(cmd.Flags())
	rf.register(cmd)
	lf.register(cmd)
	of.register(cmd)
	sf.register(cmd)
	gf.register(cmd)
	cmd.Flags().StringVar(&authzPath, "authz-socket", "", "serve Docker's authorization plugin API on this unix socket (e.g. /run/docker/plugins/pullguard.sock); a socket passed by systemd is used when present")
	cmd.Flags().DurationVar(&resync, "resync-interval", daemon.DefaultResyncInterval, "reconcile every runtime this often even without events (0: never)")
	cmd.Flags().DurationVar(&settle, "settle-period", daemon.DefaultSettle, "after a policy reload, removals and stops of what the previous policy allowed wait until the policy files have been unchanged this long (0: no wait)")
	cmd.Flags().StringVar(&authzLabel, "authz", "auto", "authorization plugin: auto (serve when a socket is given or passed by systemd), off")
	return cmd
}

// releaseQuiet is how long the daemon must have done no work (no
// reconcile ended, no event read, no collection) before the executable's
// pages are given back.
const releaseQuiet = 2 * time.Second

// releasePages gives back the executable's pages that start-up touched
// (package initialization, the first reconcile) once every guard's first
// pass is over, and then again after each burst of work (a reconcile, a
// run of events): an idle daemon runs a small part of its code, and maps
// back what it needs as it goes.
func releasePages(ctx context.Context, guards []daemon.Guard, r *residency.Releaser, log *logrus.Logger) {
	for _, g := range guards {
		select {
		case <-g.FirstPass():
		case <-ctx.Done():
			return
		}
	}
	report := func(rel residency.Released, err error) {
		if err != nil {
			log.WithError(err).Debug("could not release the executable's pages")
			return
		}
		log.Debugf("released the executable's pages: %v", rel)
	}
	report(residency.ReleaseExecutable())
	r.Run(ctx, report)
}

// busyObserver tells the metrics of what the guards do, and the releaser
// that they are at work.
type busyObserver struct {
	enforcer.Observer
	busy func()
}

func (o busyObserver) Reconciled(runtime, trigger string, took time.Duration, err error) {
	o.Observer.Reconciled(runtime, trigger, took, err)
	o.busy()
}

func (o busyObserver) Event(runtime string) {
	o.Observer.Event(runtime)
	o.busy()
}

// resyncInterval maps the flag, where 0 means never, to the daemon's
// setting, where 0 means the default and a negative value never.
func resyncInterval(flag time.Duration) time.Duration {
	if flag <= 0 {
		return -1
	}
	return flag
}

// settleFlag maps the flag, where 0 means no hold, to the daemon's
// setting, where 0 means the default and a negative value no hold.
func settleFlag(flag time.Duration) time.Duration {
	if flag <= 0 {
		return -1
	}
	return flag
}

// namedGuard gives a runtime guard the name the daemon shows for it.
type namedGuard struct {
	name string
	runGuard
}

type runGuard interface {
	Run(context.Context) error
	RequestReconcile()
	FirstPass() <-chan struct{}
}

func (g namedGuard) Name() string { return g.name }

// Stalled passes the watchdog's question on to guards that can answer it.
func (g namedGuard) Stalled(now time.Time, limit time.Duration) bool {
	s, ok := g.runGuard.(daemon.Staller)
	return ok && s.Stalled(now, limit)
}

// buildGuards builds the guards the flags ask for; m (nil: none) is told
// what they do, and busy that they are at work.
func buildGuards(rf runtimeFlags, authzPath, authzMode string, policies enforcer.PolicySource, rep enforcer.Reporter,
	m *metrics.Metrics, busy func(), log *logrus.Logger, closers *[]func(), ev evidenceWiring) ([]daemon.Guard, error) {
	observer := enforcer.Observer(busyObserver{m, busy})
	var guards []daemon.Guard
	// One verifier, with one cache, for every guard and the plugin: it
	// contacts a registry only for what a signed-by rule names.
	reg := registry.New(ev.registry)
	sigs := signature.New(reg)
	// One provenance cache, likewise: the registries are asked where
	// content came from (local-images: deny) on containerd and on Docker's
	// containerd image store, once for the guards and the plugin.
	prov := provenance.New(reg)
	// Both answer the policy's questions about content in one place, which
	// warns once when pullguard has no network.
	if rf.undecidedGrace < 0 {
		return nil, fmt.Errorf("--undecided-grace %s: must not be negative", rf.undecidedGrace)
	}
	judge := evidence.New(sigs, prov, log).WithGrace(rf.undecidedGrace)
	judge.KeepVerdicts(ev.verdicts)
	// The plugin's image index drops what each image event the Docker
	// guard reads may have made wrong; the plugin is built after the guard.
	var plugin *authz.Server
	var docker *dockerguard.Guard
	var dockerAPI dockerguard.API
	if rf.docker() {
		api, err := dockerguard.NewAPI(rf.dockerHost)
		if err != nil {
			return nil, fmt.Errorf("--docker-host: %w", err)
		}
		dockerAPI = api
		docker = dockerguard.New(api, policies, rep, log, dockerguard.WithObserver(observer), dockerguard.WithImageEvents(func(ev dockerguard.Event) {
			if plugin != nil {
				plugin.ImageEvent(ev.Action, ev.ID, ev.Attributes["name"])
			}
		}), dockerguard.WithEvidence(judge))
		guards = append(guards, namedGuard{enforcer.RuntimeDocker, docker})
	}
	if rf.containerd() {
		api, err := cdguard.NewAPI(rf.containerdAddress)
		if err != nil {
			return nil, fmt.Errorf("--containerd-address: %w", err)
		}
		*closers = append(*closers, func() { api.Close() })
		opts := []cdguard.Option{cdguard.WithObserver(observer), cdguard.WithEvidence(judge)}
		if len(rf.containerdNamespace) > 0 {
			opts = append(opts, cdguard.WithNamespaces(rf.containerdNamespace))
		}
		if rf.docker() {
			// Docker's containers (and, with Docker's containerd image
			// store, its images) live in these namespaces: what dockerd
			// accounts for is the Docker guard's to judge, with the names
			// Docker knows; what other clients wrote there is judged here.
			// Records written into moby behind dockerd's back get a Docker
			// reconcile.
			dockerView, err := dockerstore.NewDocker(dockerAPI, rf.dockerHost)
			if err != nil {
				return nil, fmt.Errorf("--docker-host: %w", err)
			}
			owner := dockerstore.NewOwner(dockerView, log)
			opts = append(opts, cdguard.WithOwner(owner))
			guards = append(guards, namedGuard{"docker-containerd-store",
				dockerstore.New(api, []string{dockerstore.Containers}, func() {
					if owner.DockerImages() { // not with dockerd's own store (20.10)
						docker.RequestReconcile()
					}
				}, log)})
		}
		guards = append(guards, namedGuard{enforcer.RuntimeContainerd, cdguard.New(api, policies, rep, log, opts...)})
		if p := nriPlugin(rf.nriSocket, api, policies, rep, judge, observer, log); p != nil {
			guards = append(guards, p)
		}
	}
	if authzMode != "off" {
		g, err := buildAuthz(rf, authzPath, policies, rep, m, log, closers, sigs, judge)
		if err != nil {
			return nil, err
		}
		if g != nil {
			plugin = g.server
			guards = append(guards, g)
		}
	}
	if len(guards) == 0 {
		return nil, errors.New("nothing to guard: --docker-host and --containerd-address are both none and no authorization plugin socket is set")
	}
	return guards, nil
}

// authzGuard runs the authorization plugin server as one of the daemon's
// components. Its socket is listening before the daemon reports ready, so
// a dockerd ordered after pullguard finds it.
type authzGuard struct {
	server    *authz.Server
	listeners []net.Listener
	ready     chan struct{}
}

func (g *authzGuard) Name() string               { return "docker-authz" }
func (g *authzGuard) RequestReconcile()          {}
func (g *authzGuard) FirstPass() <-chan struct{} { return g.ready }
func (g *authzGuard) Run(ctx context.Context) error {
	errs := make(chan error, len(g.listeners))
	for _, l := range g.listeners {
		go func(l net.Listener) { errs <- g.server.Serve(ctx, l) }(l)
	}
	var first error
	for range g.listeners {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func buildAuthz(rf runtimeFlags, path string, policies enforcer.PolicySource, rep enforcer.Reporter, m *metrics.Metrics,
	log *logrus.Logger, closers *[]func(), sigs authz.Signatures, judge *evidence.Judge) (*authzGuard, error) {
	listeners, err := authz.ListenersFromSystemd()
	if err != nil {
		return nil, err
	}
	if !rf.docker() {
		if path != "" {
			return nil, errors.New("--authz-socket needs Docker (--docker-host) to resolve local images")
		}
		// The packaged unit always passes the plugin's socket; on a host
		// without Docker (a Kubernetes node) nobody will call it.
		for _, l := range listeners {
			l.Close()
		}
		if len(listeners) > 0 {
			log.Info("Docker is off (--docker-host none): not serving the authorization plugin socket systemd passed")
		}
		return nil, nil
	}
	if len(listeners) == 0 && path != "" {
		l, err := authz.Listen(path)
		if err != nil {
			return nil, fmt.Errorf("--authz-socket: %w", err)
		}
		listeners = []net.Listener{l}
	}
	if len(listeners) == 0 {
		return nil, nil
	}
	c, err := client.New(client.WithHost(rf.dockerHost))
	if err != nil {
		return nil, fmt.Errorf("--docker-host: %w", err)
	}
	*closers = append(*closers, func() { c.Close() })
	ready := make(chan struct{})
	close(ready)
	srv := authz.New(policies, authz.NewDockerResolver(c), rep, log, authz.WithRequestObserver(m.AuthzRequest), authz.WithSignatures(sigs), authz.WithEvidence(judge))
	return &authzGuard{server: srv, listeners: listeners, ready: ready}, nil
}
