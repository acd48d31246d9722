package integration

// End-to-end tests of pullguard's Docker authorization plugin (issue 6): the environment's
// dockerd consults pullguard for every API request (daemon.json "authorization-plugins",
// reloaded with SIGHUP), and disallowed pulls, creates and tags are refused before they
// happen. Outcomes are read back with the docker CLI, raw API requests and from journald.

import (
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// startAuthzGuard starts pullguard (StartDaemon) with its authorization plugin on dockerd's
// discovery path (/run/docker/plugins/NAME.sock) and the Docker guard (the plugin resolves
// local images through Docker's API), then enables the plugin in dockerd. It returns the
// plugin's name.
func startAuthzGuard(t testing.TB, e *Env, policyPath string) (*Pullguard, string) {
	t.Helper()
	name := authzPluginName()
	sock := authzSocket(t, name)
	d := StartDaemon(t, policyPath, "--docker-host", e.DockerHost, "--containerd-address", "none",
		"--authz-socket", sock)
	enableAuthzPlugin(t, e, name)
	return d, name
}

// deniedBy is how the docker CLI and the API show pullguard's refusal of ref.
func deniedBy(plugin, ref string) string {
	return "authorization denied by plugin " + plugin + ": pullguard: " + ref + " is not allowed: "
}

// requireRefused fails the test unless err is a refusal by the plugin whose message holds all
// of parts.
func requireRefused(t testing.TB, err error, plugin string, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("the request succeeded; want it refused by pullguard")
		return
	}
	msg := err.Error()
	for _, p := range append([]string{"authorization denied by plugin " + plugin + ": pullguard: "}, parts...) {
		if !strings.Contains(msg, p) {
			t.Errorf("the refusal does not say %q:\n%s", p, msg)
		}
	}
}

// TestAuthzPull: a disallowed pull is refused with pullguard's message naming the reference, the
// rule and the reason, nothing lands (so the event watcher has nothing to remove), and the
// refusal is a journal entry; an allowed pull works.
func TestAuthzPull(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		path := WritePolicy(t, "", policyWithRunning(e, "enforce", "keep"))
		d, plugin := startAuthzGuard(t, e, path)
		evil, allowed := e.Ref("evil/miner:latest"), e.Ref("approved/busybox:1.0")
		rule := " (" + path + ":7)" // the deny rule for evil/**

		_, err := e.DockerErr(t, "pull", evil)
		requireRefused(t, err, plugin, deniedBy(plugin, evil), rule)
		_, err = e.DockerErr(t, "pull", "--all-tags", e.Ref("evil/miner"))
		requireRefused(t, err, plugin, "a pull of every tag of "+e.Ref("evil/miner"))
		if ids := e.ImageIDs(t); len(ids) > 0 {
			t.Errorf("images landed in dockerd despite the refusals: %q", ids)
		}

		blocked := d.WaitEntries(t, actDeadline, 2, "PULLGUARD_ACTION=blocked")
		requireFields(t, blocked[0], map[string]string{
			"MESSAGE_ID":        msgBlocked,
			"PRIORITY":          "4",
			"SYSLOG_IDENTIFIER": "pullguard",
			"PULLGUARD_EVENT":   "authz",
			"PULLGUARD_HOOK":    "authz",
			"PULLGUARD_RUNTIME": "docker",
			"PULLGUARD_IMAGE":   evil,
			"PULLGUARD_RULE":    path + ":7",
			"PULLGUARD_MODE":    "enforce",
		})
		if !strings.HasPrefix(blocked[0]["MESSAGE"], "blocked a request for docker image "+evil) {
			t.Errorf("MESSAGE = %q", blocked[0]["MESSAGE"])
		}

		e.Docker(t, "pull", "--quiet", allowed)
		if !e.ImageExists(t, allowed) {
			t.Errorf("%s is not in dockerd after an allowed pull", allowed)
		}
		if n := len(d.Entries(t, "PULLGUARD_ACTION=removed")); n > 0 {
			t.Errorf("%d removed entries: something disallowed landed after all", n)
		}
	})
}

// TestAuthzLocalImages: an image already in Docker's store (kept because a running container
// uses it and the policy says running: keep) cannot be run or created again, by name or by
// short ID, nor renamed to an allowed name; an allowed image cannot be tagged with a
// disallowed name. Allowed creates and tags work.
func TestAuthzLocalImages(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		evil, allowed := e.Ref("evil/miner:latest"), e.Ref("approved/busybox:1.0")
		// Before pullguard: the disallowed image, in use.
		e.Docker(t, "pull", "--quiet", evil)
		keeper := e.Docker(t, "run", "-d", evil, "sleep", "300")
		evilID := imageID(t, e, evil)

		_, plugin := startAuthzGuard(t, e, WritePolicy(t, "", policyWithRunning(e, "enforce", "keep")))
		if !e.ImageExists(t, evil) {
			t.Fatalf("the Docker guard removed %s although a running container uses it (running: keep); "+
				"this test needs it in Docker's store", evil)
		}
		e.Docker(t, "pull", "--quiet", allowed)

		t.Run("create by name", func(t *testing.T) {
			_, err := e.DockerErr(t, "create", evil, "true")
			requireRefused(t, err, plugin, deniedBy(plugin, evil))
		})
		t.Run("run by name", func(t *testing.T) {
			_, err := e.DockerErr(t, "run", "--rm", evil, "true")
			requireRefused(t, err, plugin, deniedBy(plugin, evil))
		})
		t.Run("create by short ID", func(t *testing.T) {
			short := strings.TrimPrefix(evilID, "sha256:")[:12]
			_, err := e.DockerErr(t, "create", short, "true")
			requireRefused(t, err, plugin, "image "+short+" has no allowed name")
		})
		t.Run("tag a disallowed image with an allowed name", func(t *testing.T) {
			target := e.Ref("approved/busybox:laundered")
			_, err := e.DockerErr(t, "tag", evil, target)
			requireRefused(t, err, plugin, "cannot tag "+evil+" as "+target)
			if e.ImageExists(t, target) {
				t.Errorf("%s exists", target)
			}
		})
		t.Run("tag an allowed image with a disallowed name", func(t *testing.T) {
			target := e.Ref("evil/miner:2.0")
			_, err := e.DockerErr(t, "tag", allowed, target)
			requireRefused(t, err, plugin, "cannot tag "+allowed+" as "+target+": "+target+" is not allowed: ")
			if e.ImageExists(t, target) {
				t.Errorf("%s exists", target)
			}
		})
		t.Run("allowed create and tag", func(t *testing.T) {
			e.Docker(t, "tag", allowed, e.Ref("approved/busybox:copy"))
			e.Docker(t, "create", "--name", UniqueName(t), e.Ref("approved/busybox:copy"), "true")
		})

		all := sortedFields(e.Docker(t, "ps", "--all", "--quiet", "--no-trunc"))
		if len(all) != 2 || !strings.Contains(strings.Join(all, " "), keeper) {
			t.Errorf("containers = %q, want the keeper %s and the allowed one", all, keeper)
		}
	})
}

// TestAuthzIndexFollowsNames: the plugin's image index, which spares judged requests a lookup
// through Docker's API, follows what tags and removals change. An image the plugin knows by its
// ID, tagged (the index adds the name) and then stripped of both allowed names while a container
// keeps it in the store, cannot be run by its ID.
func TestAuthzIndexFollowsNames(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		allowed, copyName := e.Ref("approved/busybox:1.0"), e.Ref("approved/busybox:indexed")
		_, plugin := startAuthzGuard(t, e, WritePolicy(t, "", policyWithRunning(e, "enforce", "keep")))
		e.Docker(t, "pull", "--quiet", allowed)
		short := strings.TrimPrefix(imageID(t, e, allowed), "sha256:")[:12]
		e.Docker(t, "create", "--name", UniqueName(t), short, "true")
		e.Docker(t, "tag", allowed, copyName)
		e.Docker(t, "create", "--name", UniqueName(t), short, "true")
		e.Docker(t, "create", "--name", UniqueName(t), copyName, "true")

		e.Docker(t, "rmi", allowed)
		e.Docker(t, "create", "--name", UniqueName(t), short, "true") // it keeps an allowed name
		e.Docker(t, "rmi", "--force", copyName)
		_, err := e.DockerErr(t, "create", short, "true")
		requireRefused(t, err, plugin, short)
	})
}

// TestAuthzFormBody: raw API pulls whose parameters are in a urlencoded body, which dockerd
// reads before the query's. dockerd forwards only application/json bodies to the plugin, so
// such a request is refused, not waved through, whatever it asks for; a body dockerd does
// forward is read as the form it is and judged by what it asks for.
func TestAuthzFormBody(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		d, plugin := startAuthzGuard(t, e, WritePolicy(t, "", policyWithRunning(e, "enforce", "keep")))
		raw := newRawDocker(t, e)
		form := func(repo, tag string) []byte {
			return []byte(url.Values{"fromImage": {e.Ref(repo)}, "tag": {tag}}.Encode())
		}
		urlencoded := [2]string{"Content-Type", "application/x-www-form-urlencoded"}
		jsonType := [2]string{"Content-Type", "application/json"}

		for _, repo := range []string{"evil/miner", "approved/busybox"} {
			r := raw.do(t, "POST", e.Engine.APIPath+"/images/create", form(repo, "1.0"), urlencoded)
			if r.Status != 403 || !strings.Contains(r.Message, "authorization denied by plugin "+plugin+": pullguard: ") ||
				!strings.Contains(r.Message, "did not forward") {
				t.Errorf("urlencoded body asking for %s: status %d, %q; want 403 from pullguard: body not forwarded", repo, r.Status, r.Body)
			}
		}

		// Two Content-Type headers: dockerd forwards the body (it checks the first), the plugin
		// must read it as a form.
		r := raw.do(t, "POST", e.Engine.APIPath+"/images/create", form("evil/miner", "1.0"), jsonType, urlencoded)
		if want := deniedBy(plugin, e.Ref("evil/miner:1.0")); r.Status != 403 || !strings.Contains(r.Message, want) {
			t.Errorf("forwarded form asking for evil/miner:1.0: status %d, %q; want 403 with %q", r.Status, r.Body, want)
		}
		r = raw.do(t, "POST", e.Engine.APIPath+"/images/create", form("approved/busybox", "1.0"), jsonType, urlencoded)
		if strings.Contains(r.Message, "authorization denied") {
			t.Errorf("forwarded form asking for approved/busybox:1.0 was refused: %q", r.Body)
		}

		for _, ref := range []string{e.Ref("evil/miner:1.0"), e.Ref("evil/miner:latest")} {
			if e.ImageExists(t, ref) {
				t.Errorf("%s landed in dockerd", ref)
			}
		}
		// Two entries: the identical refusals of unforwarded bodies are one entry (flood control).
		d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=blocked", "PULLGUARD_IMAGE="+e.Ref("evil/miner:1.0"))
		withheld := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=blocked", "PULLGUARD_IMAGE=POST "+e.Engine.APIPath+"/images/create")
		if !strings.Contains(withheld["PULLGUARD_REASON"], "did not forward") {
			t.Errorf("PULLGUARD_REASON = %q", withheld["PULLGUARD_REASON"])
		}
	})
}

// TestAuthzAuditMode: in audit mode the plugin lets everything through and logs what it would
// have refused.
func TestAuthzAuditMode(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		d, _ := startAuthzGuard(t, e, WritePolicy(t, "", policyWithRunning(e, "audit", "keep")))
		evil := e.Ref("evil/miner:latest")

		e.Docker(t, "pull", "--quiet", evil)
		e.Docker(t, "tag", evil, e.Ref("evil/miner:2.0"))

		en := d.WaitEntries(t, actDeadline, 2, "PULLGUARD_ACTION=would-block")
		requireFields(t, en[0], map[string]string{
			"MESSAGE_ID":        msgWouldAct,
			"PULLGUARD_EVENT":   "authz",
			"PULLGUARD_RUNTIME": "docker",
			"PULLGUARD_IMAGE":   evil,
			"PULLGUARD_MODE":    "audit",
		})
		if n := len(d.Entries(t, "PULLGUARD_ACTION=blocked")); n > 0 {
			t.Errorf("%d blocked entries in audit mode", n)
		}
		// The event watcher audits the pull too, and nothing is removed.
		d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=would-remove", "PULLGUARD_RUNTIME=docker")
		for _, ref := range []string{evil, e.Ref("evil/miner:2.0")} {
			if !e.ImageExists(t, ref) {
				t.Errorf("%s is not in dockerd; audit mode must act on nothing", ref)
			}
		}
	})
}

// TestAuthzSocketActivation: the daemon serves the plugin on a socket handed over by socket
// activation (systemd-socket-activate stands in for a systemd .socket unit): dockerd's first
// connection starts pullguard, which answers on the passed socket without opening one itself.
func TestAuthzSocketActivation(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		path := WritePolicy(t, "", policyWithRunning(e, "enforce", "keep"))
		name := authzPluginName()
		sock := filepath.Join(socketDir(t, "pgsa-"), "authz.sock")
		writeAuthzSpec(t, name, sock) // a socket outside /run/docker/plugins: found through a spec file

		d := startActivatedPullguard(t, sock, daemonArgs(path, "--docker-host", e.DockerHost, "--containerd-address", "none")...)
		enableAuthzPlugin(t, e, name) // dockerd connects: pullguard starts
		d.WaitEntry(t, readyDeadline, "MESSAGE_ID="+msgStarted)
		exe, err := os.Readlink("/proc/" + strconv.Itoa(d.PID()) + "/exe")
		if err != nil || exe != BuildPullguard(t) {
			t.Fatalf("the activated process runs %q (%v), want pullguard", exe, err)
		}

		evil := e.Ref("evil/miner:latest")
		_, err = e.DockerErr(t, "pull", evil)
		requireRefused(t, err, name, deniedBy(name, evil))
		en := d.WaitEntry(t, actDeadline, "PULLGUARD_ACTION=blocked")
		requireFields(t, en, map[string]string{"PULLGUARD_EVENT": "authz", "PULLGUARD_IMAGE": evil})
		e.Docker(t, "pull", "--quiet", e.Ref("approved/busybox:1.0"))
		if e.ImageExists(t, evil) {
			t.Errorf("%s landed in dockerd", evil)
		}
	})
}
