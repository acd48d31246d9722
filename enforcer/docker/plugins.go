package docker

import (
	"context"
	"errors"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
	"github.com/pullguard/pullguard/enforcer/internal/engine"
	"github.com/pullguard/pullguard/policy"
)

// Plugins are images: `docker plugin install` pulls an image and Docker
// runs it as root, in its own containerd namespace, outside every container
// list. The guard judges each installed plugin by where it came from (its
// PluginReference, the remote of its last pull or upgrade) and by its local
// name, and disables and removes a disallowed one; an allowed one is never
// touched. A plugin made on the host (`docker plugin create`) is local
// content: under local-images: deny its create event removes it. Listing
// cannot tell it from a pulled one (Docker records the plugin's name as its
// reference), so the reconcile judges that name like a remote.

// Plugin is an installed Docker plugin.
type Plugin struct {
	ID   string
	Name string
	// Reference is where its content was pulled from (PluginReference).
	Reference string
	Enabled   bool
}

// Plugin event actions: an install or an upgrade is a pull (actor: the
// remote; attribute name: the local name), a create or an enable names the
// plugin by ID.
const (
	typePlugin   = "plugin"
	actionEnable = "enable"
)

// judgePlugin decides whether a plugin may stay (policy.DecidePlugin).
func judgePlugin(p *policy.Policy, now time.Time, pl Plugin) policy.Decision {
	return p.DecidePlugin([]string{pl.Reference, pl.Name}, now)
}

// pluginJob judges the plugin a plugin event is about, by its local name.
func pluginJob(ev Event) []job {
	switch ev.Action {
	case actionPull, actionCreate, actionEnable:
		if name := ev.Attributes["name"]; name != "" {
			return []job{{Key: jobKey{jobPlugin, name}, Value: jobValue{event: ev.Action}}}
		}
	}
	return nil
}

// enforcePlugins brings the installed plugins in line: every one, or only
// the one named name (an event's).
func (g *Guard) enforcePlugins(ctx context.Context, p *policy.Policy, event, name string) error {
	list, err := g.api.ListPlugins(ctx)
	if err != nil {
		return err
	}
	now := g.now()
	for _, pl := range list {
		if name != "" && pl.Name != name {
			continue
		}
		d := judgePlugin(p, now, pl)
		if d.Allowed && (event != actionCreate || p.LocalImages != policy.LocalImagesDeny) {
			continue
		}
		if d.Allowed {
			// Made on this host from a local root file system.
			d = policy.Decision{Input: pl.Name, Reference: d.Reference, Reason: "the plugin was created on this host: " + policy.ReasonLocalContent}
		}
		g.exec.Execute(ctx, g.pluginStep(p, event, pl, d))
	}
	return nil
}

// pluginStep disables and removes one disallowed plugin.
func (g *Guard) pluginStep(p *policy.Policy, event string, pl Plugin, d policy.Decision) engine.Step {
	ref := pl.Reference
	if ref == "" {
		ref = pl.Name
	}
	return engine.Step{Policy: p,
		Record: enforcer.Record{Action: enforcer.Removed, Event: event, Plugin: ref, Decision: d},
		Do: func(ctx context.Context) (enforcer.Action, error) {
			g.locks.Lock("p" + pl.ID)
			defer g.locks.Unlock("p" + pl.ID)
			if pl.Enabled {
				// Stop it first, so that it no longer runs even if the
				// removal fails.
				if err := g.api.DisablePlugin(ctx, pl.ID); errors.Is(err, ErrNotFound) {
					return "", engine.ErrGone
				} else if err != nil {
					g.log.WithFields(logrus.Fields{"plugin": pl.Name, "error": err}).Warn("cannot disable plugin; removing it by force")
				}
			}
			if err := g.api.RemovePlugin(ctx, pl.ID); errors.Is(err, ErrNotFound) {
				return "", engine.ErrGone
			} else if err != nil {
				return "", err
			}
			return enforcer.Removed, nil
		},
		AllowedBy: func(prev *policy.Policy) bool { return judgePlugin(prev, g.now(), pl).Allowed },
	}
}
