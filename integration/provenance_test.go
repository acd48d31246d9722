package integration

// End-to-end tests of content provenance (issues 12 and 17) on both Docker engines: an
// allowed name on content that never came from an allowed repository (loaded, imported, built,
// committed, or disallowed content re-tagged) is not an allowed image under `local-images:
// deny` (the default), and is judged by its name alone under `local-images: allow`. Plugins are
// images: installing, upgrading or creating one is judged, and a disallowed one is disabled and
// removed. Every route is tried as a user with the Docker socket would, and the outcome read
// back from dockerd and journald.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reasonLocalContent is how pullguard says that an image's content came from no allowed
// repository.
const reasonLocalContent = "content did not come from an allowed repository"

// provenancePolicy is the seeded images' policy (allow approved/**, deny evil/**) in enforce
// mode, keeping running containers, with local-images set to local.
func provenancePolicy(e *Env, local string) string {
	return policyYAML(e, "enforce", false, "default: deny", "running: keep", "local-images: "+local)
}

// stillThere fails the test unless ref names image id for a while: what a test can assert of
// something pullguard must leave alone, once its own sentinel shows the guard is caught up.
func stillThere(t testing.TB, e *Env, ref, id string) {
	t.Helper()
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		img, ok := e.InspectImage(t, ref)
		if !ok || (id != "" && img.ID != id) {
			t.Errorf("%s is gone or moved (image %q, want %s), but the policy allows it", ref, img.ID, id)
			return
		}
		time.Sleep(pollInterval)
	}
}

// caughtUp tags the allowed image with a disallowed name and waits until the guard has
// removed it: the guard has then handled the events before it.
func caughtUp(t testing.TB, e *Env, g *Pullguard, allowed string) {
	t.Helper()
	sentinel := e.Ref("evil/sentinel:" + strconv.FormatInt(time.Now().UnixNano(), 36))
	e.Docker(t, "tag", allowed, sentinel)
	g.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+sentinel)
}

// requireLocalContentRemoved waits until ref no longer names image id (any image, when id is
// "") and checks the journal entry that says why.
func requireLocalContentRemoved(t testing.TB, e *Env, g *Pullguard, ref, id string, events ...string) {
	t.Helper()
	Eventually(t, actDeadline, func() (bool, string) {
		img, ok := e.InspectImage(t, ref)
		return !ok || (id != "" && img.ID != id), fmt.Sprintf("%s still names the content %s, which came from no allowed repository", ref, img.ID)
	})
	entry := g.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+ref, "MESSAGE_ID="+msgActionTaken)
	if a := entry["PULLGUARD_ACTION"]; a != "removed" && a != "untagged" {
		t.Errorf("PULLGUARD_ACTION = %q for %s, want removed or untagged", a, ref)
	}
	if !strings.Contains(entry["PULLGUARD_REASON"], reasonLocalContent) {
		t.Errorf("PULLGUARD_REASON = %q for %s, want it to say %q", entry["PULLGUARD_REASON"], ref, reasonLocalContent)
	}
	if len(events) > 0 && !containsString(events, entry["PULLGUARD_EVENT"]) {
		t.Errorf("PULLGUARD_EVENT = %q for %s, want one of %q", entry["PULLGUARD_EVENT"], ref, events)
	}
}

// allowedFlows pulls approved, re-tags it to another allowed name and runs that, as a user
// of approved content does; it returns the content's ID and the other name.
func allowedFlows(t *testing.T, e *Env, approved string) (id, other string) {
	t.Helper()
	e.Docker(t, "pull", "-q", approved)
	id = imageID(t, e, approved)
	other = e.Ref("approved/other:2")
	e.Docker(t, "tag", approved, other)
	if got := e.Docker(t, "run", "--rm", other, "echo", "ok"); got != "ok" {
		t.Errorf("docker run %s printed %q", other, got)
	}
	return id, other
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestProvenanceEventGuard: the event guard alone (no authorization plugin), on every route
// that puts an approved name on content made on the host. Under deny the name goes, and
// content left without a name is deleted with it, while approved content that only lost its
// name to a load stays; under allow everything stays as it is today. Pulling and re-tagging
// approved content to another allowed name stays allowed under both. On Docker 29's containerd
// image store, where dockerd shows a repository digest under every name, the registry is asked.
func TestProvenanceEventGuard(t *testing.T) {
	for _, local := range []string{"deny", "allow"} {
		t.Run(local, func(t *testing.T) {
			ForEachDocker(t, func(t *testing.T, e *Env) {
				removeImagesAtEnd(t, e)
				approved, evilTag := e.Ref("approved/busybox:1.0"), e.Ref("evil/miner:1.0")

				// Made before pullguard runs: evil content under the approved name, in a tarball,
				// and evil content re-tagged with an approved name.
				tarball := loadableAs(t, evilTag, approved)
				e.Docker(t, "pull", "-q", evilTag)
				evilID := imageID(t, e, evilTag)
				retagged := e.Ref("approved/retagged-evil:1")
				e.Docker(t, "tag", evilTag, retagged)
				rootfs := rootfsTar(t, UniqueName(t))

				g := startDockerGuard(t, e, WritePolicy(t, "", provenancePolicy(e, local)))
				raw := newRawDocker(t, e)

				t.Run("re-tagged disallowed content", func(t *testing.T) {
					// The start-up reconcile judged it.
					if local == "deny" {
						requireLocalContentRemoved(t, e, g, retagged, evilID, "reconcile")
						waitImageGone(t, e, evilID)
						return
					}
					waitImageGone(t, e, evilTag)
					stillThere(t, e, retagged, evilID)
				})

				// The allowed flows, unchanged under both settings.
				approvedID, other := allowedFlows(t, e, approved)

				t.Run("load", func(t *testing.T) {
					out := e.Docker(t, "load", "-i", tarball)
					t.Logf("docker load: %s", out)
					loaded, _ := e.InspectImage(t, approved)
					if local == "allow" && loaded.ID == approvedID {
						t.Fatalf("docker load did not move %s to the loaded content: it names %s", approved, loaded.ID)
					}
					if local == "deny" {
						// The name moved to the loaded content and goes with it.
						requireLocalContentRemoved(t, e, g, approved, "", "load")
						waitImageGone(t, e, evilID)
						// The approved content that lost its name to the load is not deleted: it
						// keeps the record of where it was pulled from.
						if !e.ImageExists(t, approvedID) {
							t.Errorf("the approved content %s was deleted after the load moved its name", approvedID)
						}
						if e.Engine.Modern {
							// dockerd 29 keeps the content that lost the name as a nameless
							// record, with nothing left that says which name it had: the
							// warning below is dockerd 20.10's (README, local-images).
							return
						}
						// The log says which name moved, from which content.
						want := "docker load moved " + approved + " from image " + strings.TrimPrefix(approvedID, "sha256:")[:12]
						Eventually(t, actDeadline, func() (bool, string) {
							for _, en := range g.Entries(t, "PRIORITY=4") {
								if strings.Contains(en["MESSAGE"], want) {
									return true, ""
								}
							}
							return false, "no journal entry says " + want
						})
						return
					}
					caughtUp(t, e, g, other)
					stillThere(t, e, approved, loaded.ID)
				})

				t.Run("import", func(t *testing.T) {
					name := e.Ref("approved/imported:1")
					id := e.Docker(t, "import", rootfs, name)
					if local == "deny" {
						requireLocalContentRemoved(t, e, g, name, id, "import", "tag")
						return
					}
					caughtUp(t, e, g, other)
					stillThere(t, e, name, id)
				})

				t.Run("classic build", func(t *testing.T) {
					// Built on approved content: what is built is still made on this host.
					name := e.Ref("approved/built:1")
					resp := classicBuild(t, raw, name, dockerfileContext(t, "FROM "+approved+"\nRUN echo built > /built\n"))
					if resp.Status != http.StatusOK || strings.Contains(resp.Body, `"errorDetail"`) {
						t.Fatalf("build: %d %s", resp.Status, resp.Body)
					}
					if local == "deny" {
						requireLocalContentRemoved(t, e, g, name, "", "tag")
						return
					}
					caughtUp(t, e, g, other)
					stillThere(t, e, name, "")
				})

				t.Run("commit", func(t *testing.T) {
					cid := e.Docker(t, "create", approved, "true")
					name := e.Ref("approved/committed")
					resp := raw.do(t, "POST", "/commit?container="+cid+"&repo="+queryEscape(name), nil)
					if resp.Status != http.StatusCreated {
						t.Fatalf("commit: %d %s", resp.Status, resp.Body)
					}
					if local == "deny" {
						requireLocalContentRemoved(t, e, g, name+":latest", "", "commit", "tag")
						return
					}
					caughtUp(t, e, g, other)
					stillThere(t, e, name, "")
				})

				// Through all of it the approved names on approved content stayed.
				requireImage(t, e, other, approvedID)
				if got := g.Entries(t, "PULLGUARD_IMAGE="+other); len(got) > 0 {
					t.Errorf("pullguard logged %d entries about the allowed %s: %v", len(got), other, got)
				}
			})
		})
	}
}

// TestProvenanceAuthz: on both engines, with the authorization plugin and the event guard
// running, the requests that create content on the host (import from a URL, commit, classic
// build) are refused under deny, before anything runs, and judged by their target names under
// allow.
// Plugins are judged as images under both: installing, upgrading to, or creating a disallowed
// plugin is refused. Pulling, re-tagging approved content to another allowed name, running it
// and installing an approved plugin work under both.
func TestProvenanceAuthz(t *testing.T) {
	for _, local := range []string{"deny", "allow"} {
		t.Run(local, func(t *testing.T) {
			ForEachDocker(t, func(t *testing.T, e *Env) {
				removeImagesAtEnd(t, e)
				removePluginsAtEnd(t, e)
				approved := e.Ref("approved/busybox:1.0")
				okPlugin, evilPlugin := e.Ref("approved/plug:1.0"), e.Ref("evil/plug:1.0")
				pushPlugin(t, e, okPlugin)
				pushPlugin(t, e, evilPlugin)

				// A running container of a nameless image, kept by running: keep, to commit.
				rootfs := rootfsTar(t, UniqueName(t))
				nameless := e.Docker(t, "import", rootfs)
				keeper := e.Docker(t, "run", "-d", nameless, "sleep", "300")

				g, plugin := startAuthzGuard(t, e, WritePolicy(t, "", provenancePolicy(e, local)))
				raw := newRawDocker(t, e)

				// The allowed flows.
				approvedID, other := allowedFlows(t, e, approved)
				if err := installPlugin(t, e, okPlugin, ""); err != nil {
					t.Errorf("installing the approved plugin %s: %v", okPlugin, err)
				}

				refusedLocal := func(t *testing.T, resp rawResponse, what string) {
					t.Helper()
					if resp.Status != http.StatusForbidden || !strings.Contains(resp.Message, "authorization denied by plugin "+plugin) ||
						!strings.Contains(resp.Message, reasonLocalContent) {
						t.Errorf("%s under local-images: deny: %d %q, want it refused by pullguard saying %q",
							what, resp.Status, resp.Message, reasonLocalContent)
					}
				}

				t.Run("import from a URL", func(t *testing.T) {
					name := e.Ref("approved/busybox:imported")
					uri := "/images/create?fromSrc=" + queryEscape(serveFile(t, rootfs)) +
						"&repo=" + queryEscape(e.Ref("approved/busybox")) + "&tag=imported"
					resp := raw.do(t, "POST", uri, nil)
					if local == "deny" {
						refusedLocal(t, resp, "POST /images/create?fromSrc=")
						if e.ImageExists(t, name) {
							t.Errorf("%s exists after a refused import", name)
						}
						return
					}
					if resp.Status != http.StatusOK || !e.ImageExists(t, name) {
						t.Errorf("import under local-images: allow: %d %s; %s exists: %v", resp.Status, resp.Body, name, e.ImageExists(t, name))
					}
				})

				t.Run("commit", func(t *testing.T) {
					name := e.Ref("approved/committed")
					resp := raw.do(t, "POST", "/commit?container="+keeper+"&repo="+queryEscape(name), nil)
					if local == "deny" {
						refusedLocal(t, resp, "POST /commit")
						if e.ImageExists(t, name) {
							t.Errorf("%s exists after a refused commit", name)
						}
						return
					}
					if resp.Status != http.StatusCreated {
						t.Errorf("commit under local-images: allow: %d %s", resp.Status, resp.Body)
					}
				})

				t.Run("classic build", func(t *testing.T) {
					name := e.Ref("approved/built:1")
					resp := classicBuild(t, raw, name, dockerfileContext(t, "FROM "+approved+"\nRUN echo built > /built\n"))
					if local == "deny" {
						refusedLocal(t, resp, "POST /build")
						if e.ImageExists(t, name) {
							t.Errorf("%s exists after a refused build", name)
						}
						return
					}
					if resp.Status != http.StatusOK || strings.Contains(resp.Body, `"errorDetail"`) || !e.ImageExists(t, name) {
						t.Errorf("build under local-images: allow: %d %s", resp.Status, resp.Body)
					}
				})

				t.Run("plugin install", func(t *testing.T) {
					err := installPlugin(t, e, evilPlugin, "")
					requireRefused(t, err, plugin, evilPlugin+" is not allowed")
					// An approved plugin under a disallowed local name.
					err = installPlugin(t, e, okPlugin, e.Ref("evil/alias:1"))
					requireRefused(t, err, plugin, e.Ref("evil/alias:1")+" is not allowed")
					if _, ok := findPlugin(t, e, evilPlugin); ok {
						t.Errorf("the disallowed plugin %s is installed", evilPlugin)
					}
				})

				t.Run("plugin upgrade", func(t *testing.T) {
					e.Docker(t, "plugin", "disable", okPlugin)
					resp := raw.do(t, "POST", "/plugins/"+okPlugin+"/upgrade?remote="+queryEscape(evilPlugin),
						[]byte(`[{"Name":"network","Description":"","Value":["none"]}]`), [2]string{"Content-Type", "application/json"})
					if resp.Status != http.StatusForbidden || !strings.Contains(resp.Message, evilPlugin+" is not allowed") {
						t.Errorf("upgrade to %s: %d %q, want it refused by pullguard", evilPlugin, resp.Status, resp.Message)
					}
					if p, _ := findPlugin(t, e, okPlugin); p.PluginReference != okPlugin {
						t.Errorf("plugin %s now comes from %q", okPlugin, p.PluginReference)
					}
				})

				t.Run("plugin create", func(t *testing.T) {
					evilName, okName := e.Ref("evil/created:1"), e.Ref("approved/created:1")
					create := func(name string) rawResponse {
						return raw.do(t, "POST", "/plugins/create?name="+queryEscape(name),
							tarOf(t, pluginFiles(t, UniqueName(t)+name)...), [2]string{"Content-Type", "application/x-tar"})
					}
					resp := create(evilName)
					if local == "deny" {
						refusedLocal(t, resp, "POST /plugins/create")
					} else if resp.Status != http.StatusForbidden || !strings.Contains(resp.Message, evilName+" is not allowed") {
						t.Errorf("creating the plugin %s: %d %q, want it refused by pullguard", evilName, resp.Status, resp.Message)
					}
					resp = create(okName)
					if local == "deny" {
						refusedLocal(t, resp, "POST /plugins/create")
						return
					}
					if resp.Status/100 != 2 {
						t.Errorf("creating the plugin %s under local-images: allow: %d %s", okName, resp.Status, resp.Body)
					}
				})

				// Allowed things stayed, and no refusal named them.
				requireImage(t, e, other, approvedID)
				if p, ok := findPlugin(t, e, okPlugin); !ok || p.PluginReference != okPlugin {
					t.Errorf("the approved plugin %s is gone or changed: %+v", okPlugin, p)
				}
				if got := g.Entries(t, "PULLGUARD_IMAGE="+other); len(got) > 0 {
					t.Errorf("pullguard logged %d entries about the allowed %s: %v", len(got), other, got)
				}
			})
		})
	}
}

// TestProvenancePluginsGuard: plugins installed behind the authorization plugin's back (before
// pullguard started, or with no authorization plugin) are judged by the event guard and the
// reconcile: a disallowed one is disabled and removed, with PULLGUARD_PLUGIN in the journal; an
// approved one, enabled, is never touched.
func TestProvenancePluginsGuard(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		removePluginsAtEnd(t, e)
		okPlugin, evilPlugin, evil2 := e.Ref("approved/plug:1.0"), e.Ref("evil/plug:1.0"), e.Ref("evil/plug:2.0")
		for _, ref := range []string{okPlugin, evilPlugin, evil2} {
			pushPlugin(t, e, ref)
		}
		// Before pullguard: an approved plugin and a disallowed one, both enabled.
		for _, ref := range []string{okPlugin, evilPlugin} {
			if err := installPlugin(t, e, ref, ""); err != nil {
				t.Fatal(err)
			}
		}
		okID := e.Docker(t, "plugin", "inspect", "--format", "{{.Id}}", okPlugin)

		g := startDockerGuard(t, e, WritePolicy(t, "", provenancePolicy(e, "deny")))

		gone := func(t *testing.T, ref string, events ...string) {
			t.Helper()
			Eventually(t, actDeadline, func() (bool, string) {
				_, ok := findPlugin(t, e, ref)
				return !ok, "the disallowed plugin " + ref + " is still installed"
			})
			entry := g.WaitEntry(t, actDeadline, "PULLGUARD_PLUGIN="+ref, "MESSAGE_ID="+msgActionTaken)
			requireFields(t, entry, map[string]string{"PULLGUARD_ACTION": "removed", "PULLGUARD_RUNTIME": "docker"})
			if !containsString(events, entry["PULLGUARD_EVENT"]) {
				t.Errorf("PULLGUARD_EVENT = %q, want one of %q", entry["PULLGUARD_EVENT"], events)
			}
		}
		t.Run("reconcile", func(t *testing.T) { gone(t, evilPlugin, "reconcile") })
		t.Run("install", func(t *testing.T) {
			if err := installPlugin(t, e, evil2, ""); err != nil {
				t.Logf("docker plugin install %s: %v (pullguard may remove it before it is enabled)", evil2, err)
			}
			gone(t, evil2, "pull", "enable") // the install's pull, or its enable right after
		})

		p, ok := findPlugin(t, e, okPlugin)
		if !ok || !p.Enabled || p.ID != okID {
			t.Errorf("the approved plugin %s was touched: %+v, want enabled with ID %s", okPlugin, p, okID)
		}
		if got := g.Entries(t, "PULLGUARD_PLUGIN="+okPlugin); len(got) > 0 {
			t.Errorf("pullguard logged %d entries about the approved plugin: %v", len(got), got)
		}
	})
}

// TestProvenanceRegistryStopped: with the registry gone mid-test. dockerd 20.10 records where
// content came from itself (a repository digest per repository it was pulled from), so the
// guard still tells approved content from loaded content there: the loaded name goes, the
// approved one stays. On Docker 29's containerd image store only the registry can say: the
// loaded name is kept and reported failed (never removed on an unknown), the approved content
// stays, and once the registry answers again the next reconcile removes the loaded name.
func TestProvenanceRegistryStopped(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		approved, loaded := e.Ref("approved/busybox:1.0"), e.Ref("approved/loaded:1")
		tarball := loadableAs(t, e.Ref("evil/miner:1.0"), loaded)

		g := startDockerGuard(t, e, WritePolicy(t, "", provenancePolicy(e, "deny")), "--resync-interval", "3s")
		e.Docker(t, "pull", "-q", approved)
		approvedID := imageID(t, e, approved)
		caughtUp(t, e, g, approved) // the pull was judged while the registry answered
		pid := registryPID(t, e)
		pauseRegistry(t, e)

		e.Docker(t, "tag", approved, e.Ref("approved/other:2"))
		e.Docker(t, "load", "-i", tarball)
		if !e.Engine.Modern {
			requireLocalContentRemoved(t, e, g, loaded, "", "load")
		} else {
			failed := g.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+loaded, "PULLGUARD_ACTION=failed")
			if !strings.Contains(failed["PULLGUARD_REASON"], reasonLocalContent) || failed["PULLGUARD_ERROR"] == "" {
				t.Errorf("failed entry for %s: %q, want the reason %q and an error that says why", loaded, failed, reasonLocalContent)
			}
			stillThere(t, e, loaded, "")
			if n := len(g.Entries(t, "PULLGUARD_IMAGE="+loaded, "PULLGUARD_ACTION=removed")) +
				len(g.Entries(t, "PULLGUARD_IMAGE="+loaded, "PULLGUARD_ACTION=untagged")); n > 0 {
				t.Errorf("%s removed %d times while the registry could not be reached", loaded, n)
			}
		}
		caughtUp(t, e, g, approved)
		stillThere(t, e, approved, approvedID)
		requireImage(t, e, e.Ref("approved/other:2"), approvedID)

		if e.Engine.Modern {
			// The registry is back: a reconcile removes the loaded name.
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			requireLocalContentRemoved(t, e, g, loaded, "", "reconcile")
			requireImage(t, e, approved, approvedID)
			requireImage(t, e, e.Ref("approved/other:2"), approvedID)
		}
	})
}

// TestProvenanceScan: `pullguard scan` shows, for each denied image name, which allowed
// repository digest vouches for the image's content, or that none does; on Docker 29's
// containerd image store the registry says which.
func TestProvenanceScan(t *testing.T) {
	ForEachDocker(t, testProvenanceScan)
}

func testProvenanceScan(t *testing.T, e *Env) {
	approved := e.Ref("approved/busybox:1.0")
	e.Docker(t, "pull", "-q", approved)
	badName := e.Ref("evil/alias:1")
	e.Docker(t, "tag", approved, badName) // approved content, a denied name
	imported := e.Ref("approved/imported:1")
	e.Docker(t, "import", rootfsTar(t, UniqueName(t)), imported) // an allowed name, local content
	// Where the content was pulled from. (Docker 29 lists a repository digest under every
	// name, the denied alias's too; only the registry's answer tells them apart.)
	repoDigest := ""
	img, _ := e.InspectImage(t, approved)
	for _, d := range img.RepoDigests {
		if strings.HasPrefix(d, e.Ref("approved/busybox")+"@") {
			repoDigest = d
		}
	}
	if repoDigest == "" {
		t.Fatalf("%s has repository digests %q, none of its repository", approved, img.RepoDigests)
	}

	path := WritePolicy(t, "", provenancePolicy(e, "deny"))
	stdout, stderr, code := runPullguard(t, e, "scan", "--policy", path, "--docker-host", e.DockerHost, "--output", "json")
	if code != 1 {
		t.Errorf("scan exit status %d, want 1; stderr:\n%s", code, stderr)
	}
	got := map[string]*string{}
	for line := range strings.Lines(stdout) {
		var f struct {
			Reference  string  `json:"reference"`
			Reason     string  `json:"reason"`
			Provenance *string `json:"provenance"`
		}
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("scan -o json line %q: %v", line, err)
		}
		got[f.Reference] = f.Provenance
		if f.Reference == imported && !strings.Contains(f.Reason, reasonLocalContent) {
			t.Errorf("%s: reason %q, want %q", imported, f.Reason, reasonLocalContent)
		}
	}
	for ref, want := range map[string]string{badName: repoDigest, imported: ""} {
		p, ok := got[ref]
		switch {
		case !ok:
			t.Errorf("scan does not list %s; output:\n%s", ref, stdout)
		case p == nil || *p != want:
			t.Errorf("%s: provenance %v, want %q", ref, p, want)
		}
	}
	if _, ok := got[approved]; ok {
		t.Errorf("scan lists the allowed %s", approved)
	}
	text, _, _ := runPullguard(t, e, "scan", "--policy", path, "--docker-host", e.DockerHost)
	for _, want := range []string{"[content from " + repoDigest + "]", "[content from no allowed repository]"} {
		if !strings.Contains(text, want) {
			t.Errorf("scan's text output does not say %q:\n%s", want, text)
		}
	}
}

// TestProvenanceBuildKit: under local-images: deny the authorization plugin refuses BuildKit's
// /grpc, so `docker buildx build` (which never sends POST /build) cannot make an image on the
// host either, on either engine. (buildx then falls back to its docker-container driver, whose
// BuildKit image the policy does not allow either.)
func TestProvenanceBuildKit(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		name := authzPluginName()
		sock := authzSocket(t, name)
		d := StartDaemon(t, WritePolicy(t, "", provenancePolicy(e, "deny")), "--docker-host", e.DockerHost,
			"--containerd-address", "none", "--authz-socket", sock)
		enableAuthzPlugin(t, e, name)
		built := e.Ref("approved/built:buildkit")
		out, err := buildx(t, e, built, buildContext(t, e.Ref("approved/busybox:1.0")))
		if err == nil {
			t.Fatalf("docker buildx build succeeded under local-images: deny:\n%s", out)
		}
		if !strings.Contains(err.Error(), "authorization denied by plugin "+name) {
			t.Errorf("the build failed, but not by pullguard's refusal:\n%v", err)
		}
		if e.ImageExists(t, built) {
			t.Errorf("%s exists", built)
		}
		refused := false
		for _, en := range d.WaitEntries(t, actDeadline, 1, "PULLGUARD_ACTION=blocked") {
			if strings.Contains(en["PULLGUARD_REASON"], reasonLocalContent[:len("content did not come from an allowed repository")]) &&
				strings.Contains(en["MESSAGE"], "/grpc") {
				refused = true
			}
		}
		if !refused {
			t.Errorf("no blocked entry for BuildKit's /grpc under local-images: deny")
		}
	})
}

// TestProvenanceBuildKitGuard: without the authorization plugin, under deny, the image a
// `docker buildx build` makes under an allowed name is content made on the host, whatever its
// base: the event guard removes its name after the fact, on Docker 29 at the build's tag event
// (the registry does not serve the built content), on dockerd 20.10, which reports no event
// for a BuildKit build's tag, at the next periodic reconcile (here 3 s instead of 5 min).
func TestProvenanceBuildKitGuard(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		g := startDockerGuard(t, e, WritePolicy(t, "", provenancePolicy(e, "deny")), "--resync-interval", "3s")
		built := e.Ref("approved/built:buildkit-guard")
		if out, err := buildx(t, e, built, buildContext(t, e.Ref("approved/busybox:1.0"))); err != nil {
			t.Fatalf("docker buildx build: %v\n%s", err, out)
		}
		requireLocalContentRemoved(t, e, g, built, "", "tag", "reconcile")
	})
}

// TestProvenanceAuthzLoaded: the authorization plugin judges a local image by where its content
// came from, not by its name, on both engines. Content loaded under an approved name before
// pullguard started (kept by a running container under running: keep) cannot be run again or
// re-tagged under deny: dockerd 20.10 shows no repository digest on it, and on Docker 29's
// containerd image store, where dockerd shows one under every name, the registry says it does
// not serve that content. Approved content pulled from the registry runs and re-tags as before,
// and scan lists the loaded name with no provenance.
func TestProvenanceAuthzLoaded(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		removeImagesAtEnd(t, e)
		approved, loaded := e.Ref("approved/busybox:1.0"), e.Ref("approved/loaded:1")
		tarball := loadableAs(t, e.Ref("evil/miner:1.0"), loaded)
		e.Docker(t, "load", "-i", tarball)
		if e.Engine.Modern {
			// What made this case: dockerd 29 shows a repository digest of the approved
			// repository on content that never came from it.
			img, _ := e.InspectImage(t, loaded)
			if len(img.RepoDigests) == 0 || !strings.HasPrefix(img.RepoDigests[0], e.Ref("approved/loaded")+"@") {
				t.Errorf("RepoDigests of loaded content = %q: Docker 29 no longer makes them from names (README, local-images)", img.RepoDigests)
			}
		}
		keeper := e.Docker(t, "run", "-d", loaded, "sleep", "300")

		path := WritePolicy(t, "", provenancePolicy(e, "deny"))
		g, plugin := startAuthzGuard(t, e, path)
		// The reconcile found the loaded name without provenance, kept because a running
		// container uses its image.
		kept := g.WaitEntry(t, actDeadline, "PULLGUARD_CONTAINER_ID="+keeper)
		if !strings.Contains(kept["PULLGUARD_REASON"], reasonLocalContent) {
			t.Errorf("entry for the container of loaded content: %q, want the reason %q", kept, reasonLocalContent)
		}
		if got := g.Entries(t, "PRIORITY=4"); slices.ContainsFunc(got, func(en map[string]string) bool {
			return strings.Contains(en["MESSAGE"], "names alone are judged")
		}) {
			t.Errorf("pullguard warns that it judges names alone: %v", got)
		}

		_, err := e.DockerErr(t, "run", "--rm", loaded, "true")
		requireRefused(t, err, plugin, reasonLocalContent)
		_, err = e.DockerErr(t, "tag", loaded, e.Ref("approved/loaded:2"))
		requireRefused(t, err, plugin, reasonLocalContent)
		if e.ImageExists(t, e.Ref("approved/loaded:2")) {
			t.Errorf("%s exists after a refused tag", e.Ref("approved/loaded:2"))
		}

		_, other := allowedFlows(t, e, approved)
		if got := g.Entries(t, "PULLGUARD_IMAGE="+other); len(got) > 0 {
			t.Errorf("pullguard logged %d entries about the allowed %s: %v", len(got), other, got)
		}

		out, stderr, code := runPullguard(t, e, "scan", "--policy", path, "--docker-host", e.DockerHost)
		if code != 1 || !strings.Contains(out, loaded) || !strings.Contains(out, "[content from no allowed repository]") || strings.Contains(out, other) {
			t.Errorf("scan: exit %d, want 1 listing %s with no provenance and not %s:\n%s%s", code, loaded, other, out, stderr)
		}
	})
}
