package daemon

import (
	"context"
	"fmt"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
)

// Notifier tells systemd about the daemon's state (sd_notify). Without
// $NOTIFY_SOCKET (not started by systemd) every call does nothing.
type Notifier struct {
	// Log receives watchdog problems; nil means logrus' standard logger.
	Log *logrus.Logger
	// Healthy, when set, is asked before each watchdog ping; while it
	// returns an error the ping is skipped, so that systemd restarts a
	// daemon whose event loops are stuck rather than one merely alive.
	Healthy func() error
}

// notify sends one datagram of newline-separated assignments.
func (n *Notifier) notify(lines ...string) error {
	if _, err := sd.SdNotify(false, strings.Join(lines, "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Ready says start-up (or a reload) is complete, with a status line for
// systemctl status.
func (n *Notifier) Ready(status string) error {
	if status == "" {
		return n.notify(sd.SdNotifyReady)
	}
	return n.notify(sd.SdNotifyReady, "STATUS="+oneLine(status))
}

// Reloading says a reload has begun. Type=notify-reload units need the
// MONOTONIC_USEC that goes with it; send Ready when the reload is done.
func (n *Notifier) Reloading() error {
	lines := []string{sd.SdNotifyReloading}
	if mono := strings.TrimSpace(sd.SdNotifyMonotonicUsec()); mono != "" {
		lines = append(lines, mono)
	}
	return n.notify(lines...)
}

// Stopping says shutdown has begun.
func (n *Notifier) Stopping() error { return n.notify(sd.SdNotifyStopping) }

// Status sets the status line systemctl status shows.
func (n *Notifier) Status(status string) error { return n.notify("STATUS=" + oneLine(status)) }

// watchdogInterval is the unit's WatchdogSec=, or 0 without one.
func watchdogInterval() time.Duration {
	d, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		return 0
	}
	return d
}

// RunWatchdog pings systemd's watchdog at half its interval until ctx is
// done. It returns nil at once when the unit has no WatchdogSec=.
func (n *Notifier) RunWatchdog(ctx context.Context) error {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	if interval <= 0 {
		return nil
	}
	log := n.Log
	if log == nil {
		log = logrus.StandardLogger()
	}
	ticker := time.NewTicker(interval / 2)
	defer ticker.Stop()
	unhealthy := false
	for {
		unhealthy = n.ping(log, unhealthy)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// ping pings the watchdog if the daemon is healthy. It logs when health
// changes, not at every tick, and returns whether the daemon is unhealthy.
func (n *Notifier) ping(log *logrus.Logger, wasUnhealthy bool) bool {
	if n.Healthy != nil {
		if err := n.Healthy(); err != nil {
			if !wasUnhealthy {
				log.WithError(err).Error("unhealthy: no longer pinging systemd's watchdog, which will restart pullguard")
			}
			return true
		}
		if wasUnhealthy {
			log.Info("healthy again: pinging systemd's watchdog")
		}
	}
	if err := n.notify(sd.SdNotifyWatchdog); err != nil {
		log.WithError(err).Warn("pinging systemd's watchdog")
	}
	return false
}

// oneLine keeps a status to one assignment: a newline would start another.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
