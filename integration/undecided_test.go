package integration

// End-to-end tests of bounded "undecided" (issue 24, item 4): under an allow rule with a host
// glob, content imported under a made-up host (ghost-….mirror.example.net) names a registry
// that does not exist. DNS says so (NXDOMAIN), which is a definite "not served": the record
// goes at once. A registry that merely does not answer (a refused port) leaves the content
// undecided, kept and reported failed, for --undecided-grace; then it is treated as not
// vouched for and removed, the journal saying since when no registry answered.
//
// pullguard runs in a mount namespace of its own whose /etc/resolv.conf names a DNS server
// the test runs on a loopback address: every name it resolves is asked there, and no question
// leaves the machine.

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsJail is a DNS server on a loopback address that answers every question "no such host"
// (NXDOMAIN), as a real one does for a name nobody registered, and a resolv.conf naming it.
type dnsJail struct {
	resolvConf string
	mu         sync.Mutex
	asked      []string
}

func startDNSJail(t testing.TB) *dnsJail {
	t.Helper()
	var conn net.PacketConn
	var err error
	var ip string
	for range 20 { // an address of its own: other tests may run a jail at the same time
		ip = fmt.Sprintf("127.53.%d.%d", 1+rand.IntN(250), 1+rand.IntN(250))
		if conn, err = net.ListenPacket("udp4", ip+":53"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no DNS server for the test: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	j := &dnsJail{resolvConf: filepath.Join(t.TempDir(), "resolv.conf")}
	if err := os.WriteFile(j.resolvConf, []byte("nameserver "+ip+"\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			var m dnsmessage.Message
			if m.Unpack(buf[:n]) != nil || len(m.Questions) == 0 {
				continue
			}
			j.mu.Lock()
			j.asked = append(j.asked, strings.TrimSuffix(m.Questions[0].Name.String(), "."))
			j.mu.Unlock()
			m.Header.Response, m.Header.RecursionAvailable, m.Header.RCode = true, true, dnsmessage.RCodeNameError
			m.Answers, m.Authorities, m.Additionals = nil, nil, nil
			if out, err := m.Pack(); err == nil {
				_, _ = conn.WriteTo(out, from)
			}
		}
	}()
	return j
}

// wasAsked reports whether the jail's DNS server was asked about host.
func (j *dnsJail) wasAsked(host string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Contains(j.asked, host)
}

// startJailedDaemon is StartDaemon with pullguard's name resolution in the jail.
func startJailedDaemon(t testing.TB, j *dnsJail, policyPath string, args ...string) *Pullguard {
	t.Helper()
	// unshare and sh exec: pullguard keeps the process ID its journal entries are found by.
	script := `mount --bind "$0" /etc/resolv.conf && exec "$@"`
	p := startProcess(t, "unshare", append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", script,
		j.resolvConf, BuildPullguard(t)}, daemonArgs(policyPath, args...)...)...)
	p.WaitEntries(t, readyDeadline, 1, "MESSAGE_ID="+msgStarted)
	return p
}

// refusedRegistry is a loopback host:port where nothing listens: a registry that is down.
func refusedRegistry(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// undecidedCase is the content and policy of one run: evil content saved under a ghost name
// (a host under the allowed glob that does not exist) and under a name on a registry that is
// down, both allowed by name.
type undecidedCase struct {
	ghostHost, ghost, late string
	ghostTar, lateTar      string
	policy                 string
}

// undecidedGrace is the grace the tests run the daemon with: short, and longer than a few
// resyncs, so that "kept within the grace" is seen before "removed after it".
const undecidedGrace = 8 * time.Second

func newUndecidedCase(t *testing.T, e *Env) undecidedCase {
	t.Helper()
	down := refusedRegistry(t)
	c := undecidedCase{ghostHost: fmt.Sprintf("ghost-%d.mirror.example.net", time.Now().UnixNano())}
	c.ghost, c.late = c.ghostHost+"/app:1", down+"/approved/late:1"
	// Archives in `docker save`'s classic format, made with dockerd 20.10: its manifest.json
	// names the image (Docker 29's save also writes an OCI index whose annotations name it,
	// which ctr 2.x's import prefers).
	src, evil := theEnv, e.Ref("evil/miner:1.0")
	src.Docker(t, "pull", "-q", evil)
	c.ghostTar, c.lateTar = saveAs(t, src, evil, c.ghost), saveAs(t, src, evil, c.late)
	src.Reset(t)
	e.Reset(t)
	c.policy = WritePolicy(t, "", fmt.Sprintf(`mode: enforce
default: deny
running: keep
local-images: deny
allow:
  - image: "*.mirror.example.net/**"
  - image: %s/approved/**
  - image: %s/approved/**
`, e.Registry, down))
	return c
}

// requireGhostRemoved checks the journal of the ghost's removal: for want of provenance, after
// DNS said the host does not exist, and never reported undecided.
func requireGhostRemoved(t *testing.T, d *Pullguard, j *dnsJail, c undecidedCase) {
	t.Helper()
	entry := d.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+c.ghost, "MESSAGE_ID="+msgActionTaken)
	if !strings.HasPrefix(entry["PULLGUARD_REASON"], reasonLocalContent) {
		t.Errorf("PULLGUARD_REASON = %q, want %q", entry["PULLGUARD_REASON"], reasonLocalContent)
	}
	if !j.wasAsked(c.ghostHost) {
		t.Errorf("DNS was never asked about %s", c.ghostHost)
	}
	if failed := d.Entries(t, "PULLGUARD_IMAGE="+c.ghost, "PULLGUARD_ACTION=failed"); len(failed) > 0 {
		t.Errorf("%s was reported undecided although DNS said its host does not exist: %s", c.ghost, failed[0]["PULLGUARD_ERROR"])
	}
}

// requireLateBounded checks the down registry's image: reported failed and kept within the
// grace, then removed, the reason saying since when no registry answered.
func requireLateBounded(t *testing.T, d *Pullguard, c undecidedCase, exists func() bool) {
	t.Helper()
	failed := d.WaitEntry(t, actDeadline, "PULLGUARD_IMAGE="+c.late, "PULLGUARD_ACTION=failed")
	if !strings.Contains(failed["PULLGUARD_ERROR"], "connection refused") {
		t.Errorf("PULLGUARD_ERROR = %q, want the registry's connection refused", failed["PULLGUARD_ERROR"])
	}
	if !exists() {
		t.Fatalf("%s was removed while its registry could not answer, within the grace", c.late)
	}
	removed := d.WaitEntry(t, undecidedGrace+actDeadline, "PULLGUARD_IMAGE="+c.late, "MESSAGE_ID="+msgActionTaken)
	reason := removed["PULLGUARD_REASON"]
	if !strings.HasPrefix(reason, reasonLocalContent) || !strings.Contains(reason, "no registry answered where it came from since ") {
		t.Errorf("PULLGUARD_REASON = %q, want that no registry answered since when", reason)
	}
	Eventually(t, actDeadline, func() (bool, string) { return !exists(), c.late + " is still there past the grace" })
	if took := entryTime(t, removed).Sub(entryTime(t, failed)); took < undecidedGrace-time.Second {
		t.Errorf("removed %s after it was first reported failed, before the grace of %s", took, undecidedGrace)
	}
}

// entryTime is when journald received entry.
func entryTime(t testing.TB, entry map[string]string) time.Time {
	t.Helper()
	us, err := strconv.ParseInt(entry["__REALTIME_TIMESTAMP"], 10, 64)
	if err != nil {
		t.Fatalf("journal entry without a time: %v", err)
	}
	return time.UnixMicro(us)
}

// TestUndecidedContainerd: on containerd 1.6 and 2.4.2, ctr import under a ghost host goes at
// once; under a registry that is down it stays for the grace, then goes. An allowed pull stays.
func TestUndecidedContainerd(t *testing.T) {
	ForEachContainerd(t, func(t *testing.T, e *Env) {
		const ns = "default"
		c := newUndecidedCase(t, e)
		j := startDNSJail(t)
		d := startJailedDaemon(t, j, c.policy, "--docker-host", "none", "--containerd-address", e.ContainerdAddress,
			"--resync-interval", "2s", "--undecided-grace", undecidedGrace.String())
		approved := e.Ref("approved/busybox:1.0")
		ctrPull(t, e, ns, approved)

		// Under deny pullguard may delete the record while ctr still unpacks it: then ctr
		// fails. Either way the record must go.
		_, err := e.CtrErr(t, ns, "images", "import", "--all-platforms", c.ghostTar)
		t.Logf("ctr import of %s: %v", c.ghost, err)
		waitCtrImageGone(t, e, ns, c.ghost)
		requireGhostRemoved(t, d, j, c)

		e.Ctr(t, ns, "images", "import", "--all-platforms", c.lateTar)
		requireLateBounded(t, d, c, func() bool { return slices.Contains(e.CtrImages(t, ns), c.late) })

		requireCtrImages(t, e, ns, approved)
	})
}

// TestUndecidedDocker29: the same on Docker 29's containerd image store, where a loaded
// image's repository digests prove nothing and the registry is asked; and a container of
// content no registry answered for does not stay, though the image does within the grace.
func TestUndecidedDocker29(t *testing.T) {
	e := RequireEnv(t).modernStack()
	t.Cleanup(func() { e.Reset(t) })
	c := newUndecidedCase(t, e)
	j := startDNSJail(t)
	d := startJailedDaemon(t, j, c.policy, "--containerd-address", "none", "--docker-host", e.DockerHost,
		"--resync-interval", "2s", "--undecided-grace", undecidedGrace.String())
	approved := e.Ref("approved/busybox:1.0")
	e.Docker(t, "pull", "-q", approved)

	_, err := e.DockerErr(t, "load", "-i", c.ghostTar)
	t.Logf("docker load of %s: %v", c.ghost, err)
	Eventually(t, actDeadline, func() (bool, string) { return !e.ImageExists(t, c.ghost), c.ghost + " is still there" })
	requireGhostRemoved(t, d, j, c)

	e.Docker(t, "load", "-i", c.lateTar)
	id := strings.TrimSpace(e.Docker(t, "create", c.late, "true"))
	entry := d.WaitEntry(t, actDeadline, "PULLGUARD_CONTAINER_ID="+id)
	if entry["PULLGUARD_ACTION"] != "removed" || !strings.Contains(entry["PULLGUARD_REASON"], "could not be established") {
		t.Errorf("container entry: PULLGUARD_ACTION=%q PULLGUARD_REASON=%q, want removed because its origin could not be established",
			entry["PULLGUARD_ACTION"], entry["PULLGUARD_REASON"])
	}
	requireLateBounded(t, d, c, func() bool { return e.ImageExists(t, c.late) })

	if !e.ImageExists(t, approved) {
		t.Errorf("%s, pulled from its allowed registry, was removed", approved)
	}
}
