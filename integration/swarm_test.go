package integration

import (
	"net"
	"strings"
	"testing"
)

// TestAuthzSwarmService: dockerd asks no authorization plugin about what its swarm agent does
// for a service's tasks (pull the image, create and start a container, again at every
// restart), so pullguard refuses a service of a disallowed image when it is created or
// updated, and journals the refusal; a service of an allowed image is created.
func TestAuthzSwarmService(t *testing.T) {
	ForEachDocker(t, func(t *testing.T, e *Env) {
		joinSwarm(t, e)
		path := WritePolicy(t, "", policyWithRunning(e, "enforce", "keep"))
		d, plugin := startAuthzGuard(t, e, path)
		evil, allowed := e.Ref("evil/miner:latest"), e.Ref("approved/busybox:1.0")
		// No replicas: the services' tasks never run, whatever the test finds.
		create := func(name, image string) error {
			_, err := e.DockerErr(t, "service", "create", "--detach", "--replicas", "0", "--name", name, image)
			return err
		}

		// The docker CLI pins the image to the digest the registry gives for it.
		denied := []string{"pullguard: " + evil + "@sha256:", " is not allowed: matches deny rule " + e.Ref("evil/**")}
		requireRefused(t, create("pg-evil", evil), plugin, denied...)
		if out := e.Docker(t, "service", "ls", "--quiet", "--filter", "name=pg-evil"); out != "" {
			t.Errorf("a service of %s exists despite the refusal: %s", evil, out)
		}
		blocked := d.WaitEntries(t, actDeadline, 1, "PULLGUARD_ACTION=blocked")
		requireFields(t, blocked[0], map[string]string{"PULLGUARD_EVENT": "authz", "PULLGUARD_RUNTIME": "docker"})
		if img := blocked[0]["PULLGUARD_IMAGE"]; !strings.HasPrefix(img, evil+"@sha256:") {
			t.Errorf("PULLGUARD_IMAGE = %q, want %s pinned to its digest", img, evil)
		}

		if err := create("pg-ok", allowed); err != nil {
			t.Fatalf("a service of the allowed %s was refused: %v", allowed, err)
		}
		_, err := e.DockerErr(t, "service", "update", "--detach", "--image", evil, "pg-ok")
		requireRefused(t, err, plugin, denied...)
		if img := e.Docker(t, "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", "pg-ok"); !strings.HasPrefix(img, allowed+"@sha256:") {
			t.Errorf("service pg-ok runs %q after the refused update, want %s", img, allowed)
		}
	})
}

// joinSwarm makes the stack's dockerd a single-node swarm manager on loopback, and has it leave
// the swarm (its services with it) when the test ends.
func joinSwarm(t *testing.T, e *Env) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	e.Docker(t, "swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", addr)
	t.Cleanup(func() {
		if _, err := e.DockerErr(t, "swarm", "leave", "--force"); err != nil {
			t.Errorf("leaving the swarm: %v", err)
		}
	})
}
