package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer/internal/enforcertest"
	"github.com/pullguard/pullguard/policy"
)

// socketDir is a short temporary directory: unix socket paths are limited
// to 107 bytes and t.TempDir's names grow with the test's.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgauthz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func unixClient(path string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}
}

func post(c *http.Client, path, body string) (Response, error) {
	resp, err := c.Post("http://plugin"+path, "application/json", strings.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	var res Response
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return Response{}, fmt.Errorf("%s: status %d: %w", path, resp.StatusCode, err)
	}
	return res, nil
}

// nestedImages is a resolver that behaves like dockerd does for
// pullguard's own image lookups: the lookup is itself an API request,
// which dockerd first passes to the plugin, and only then answered.
type nestedImages struct {
	client *http.Client
	inner  *fakeImages
}

func (n *nestedImages) ResolveImage(ctx context.Context, ref string) (LocalImage, bool, error) {
	res, err := post(n.client, pathAuthZReq, rawCall("GET", "/v1.41/images/"+ref+"/json", map[string]string{"User-Agent": "moby-client/v0.6.2 linux/amd64"}, ""))
	if err != nil {
		return LocalImage{}, false, err
	}
	if !res.Allow {
		return LocalImage{}, false, fmt.Errorf("own lookup refused: %s", res.Msg)
	}
	return n.inner.ResolveImage(ctx, ref)
}

func TestServe(t *testing.T) {
	sock := filepath.Join(socketDir(t), "run", "plugins", "pullguard.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	c := unixClient(sock)
	f := newFixture(t, loadPolicy(t, nil))
	f.srv.images = &nestedImages{client: c, inner: f.images}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, l) }()

	resp, err := c.Post("http://plugin"+pathActivate, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	var act activateResponse
	if err := json.NewDecoder(resp.Body).Decode(&act); err != nil || len(act.Implements) != 1 || act.Implements[0] != "authz" {
		t.Errorf("activate: %+v, %v", act, err)
	}
	resp.Body.Close()
	// Many calls at once, each of which makes a nested call of its own:
	// they must all be answered, none wait for another.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			image, allow := reg+"/evil/miner:1.0", false
			if i%2 == 0 {
				image, allow = reg+"/approved/busybox:1.0", true
			}
			b := createBody(image)
			res, err := post(c, pathAuthZReq, rawCall("POST", "/v1.41/containers/create", jsonHeaders(b), b))
			switch {
			case err != nil:
				errs <- err
			case res.Allow != allow:
				errs <- fmt.Errorf("%s: allow=%v (%s), want %v", image, res.Allow, res.Msg, allow)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(f.rec.all()); got != 16 {
		t.Errorf("%d records, want 16 (one per refusal)", got)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left behind after a clean stop: %v", err)
	}
}

// TestServeFinishesCallsInFlight: a stop lets a call that is waiting on an
// image lookup finish with its real verdict.
func TestServeFinishesCallsInFlight(t *testing.T) {
	sock := filepath.Join(socketDir(t), "p.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, loadPolicy(t, nil))
	release := make(chan struct{})
	f.images.wait = release
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, l) }()

	answer := make(chan Response, 1)
	go func() {
		b := createBody(reg + "/evil/miner:1.0")
		res, err := post(unixClient(sock), pathAuthZReq, rawCall("POST", "/v1.41/containers/create", jsonHeaders(b), b))
		if err != nil {
			t.Error(err)
		}
		answer <- res
	}()
	for f.images.callCount() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
		t.Fatal("Serve returned while a call was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	res := <-answer
	if res.Allow || !strings.Contains(res.Msg, "evil/miner:1.0 is not allowed") {
		t.Errorf("call in flight answered %+v, want its refusal", res)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestListen(t *testing.T) {
	t.Run("replaces a stale socket", func(t *testing.T) {
		sock := filepath.Join(socketDir(t), "p.sock")
		// A socket file nobody listens on, as a crash leaves it.
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
		l2, err := Listen(sock)
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		l2.Close()
	})
	t.Run("refuses a socket in use", func(t *testing.T) {
		sock := filepath.Join(socketDir(t), "p.sock")
		l, err := Listen(sock)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		if l2, err := Listen(sock); !errors.Is(err, ErrSocketInUse) {
			if l2 != nil {
				l2.Close()
			}
			t.Fatalf("second Listen: %v, want ErrSocketInUse", err)
		}
	})
	t.Run("keeps a file that is not a socket", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "p.sock")
		if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
			t.Fatal(err)
		}
		if l, err := Listen(path); err == nil || !strings.Contains(err.Error(), "is not a socket") {
			if l != nil {
				l.Close()
			}
			t.Fatalf("Listen over a regular file: %v", err)
		}
		if data, _ := os.ReadFile(path); string(data) != "keep me" {
			t.Error("the regular file was changed")
		}
	})
}

// TestListenersFromSystemd runs the test binary again with a listening
// socket as fd 3 and LISTEN_FDS=1, the way systemd (or
// systemd-socket-activate) starts a socket-activated service.
func TestListenersFromSystemd(t *testing.T) {
	if os.Getenv("PULLGUARD_AUTHZ_ACTIVATION_CHILD") == "1" {
		activationChild()
		return
	}
	t.Run("not activated", func(t *testing.T) {
		t.Setenv("LISTEN_FDS", "")
		t.Setenv("LISTEN_PID", "")
		ls, err := ListenersFromSystemd()
		if err != nil || len(ls) != 0 {
			t.Errorf("got %v, %v; want no listeners and no error", ls, err)
		}
	})
	t.Run("activated", func(t *testing.T) {
		sock := filepath.Join(socketDir(t), "act.sock")
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		file, err := l.(*net.UnixListener).File()
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		cmd := exec.Command(os.Args[0], "-test.run=^TestListenersFromSystemd$")
		cmd.Env = append(os.Environ(), "PULLGUARD_AUTHZ_ACTIVATION_CHILD=1", "LISTEN_FDS=1")
		cmd.ExtraFiles = []*os.File{file}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The child serves the plugin on the inherited socket; ask it.
		var res Response
		deadline := time.Now().Add(10 * time.Second)
		for {
			res, err = post(unixClient(sock), pathAuthZReq, rawCall("POST", "/v1.41/images/create?fromImage="+reg+"/evil/miner&tag=1.0", noBody, ""))
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		cmd.Process.Signal(os.Interrupt)
		werr := cmd.Wait()
		if err != nil {
			t.Fatalf("asking the activated child: %v\n%s", err, out.String())
		}
		if res.Allow || !strings.Contains(res.Msg, "evil/miner:1.0 is not allowed") {
			t.Errorf("activated child answered %+v", res)
		}
		if werr != nil || !strings.Contains(out.String(), "activated: 1 listener") {
			t.Errorf("child: %v\n%s", werr, out.String())
		}
	})
}

// activationChild is the socket-activated side of TestListenersFromSystemd.
// systemd sets LISTEN_PID to the service's pid, which only the child knows.
func activationChild() {
	os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	ls, err := ListenersFromSystemd()
	if err != nil || len(ls) != 1 {
		fmt.Printf("ListenersFromSystemd: %v, %v\n", ls, err)
		os.Exit(1)
	}
	fmt.Printf("activated: %d listener on %s\n", len(ls), ls[0].Addr())
	p, err := loadPolicyFile()
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	src := enforcertest.NewPolicies(p)
	srv := New(src, &fakeImages{}, &records{}, discardLogger())
	ctx, stop := signalContext()
	defer stop()
	if err := srv.Serve(ctx, ls[0]); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}

func loadPolicyFile() (*policy.Policy, error) {
	data, err := os.ReadFile(filepath.Join("testdata", "policy.yaml"))
	if err != nil {
		return nil, err
	}
	return policy.Parse(policy.Source{Name: "policy.yaml", Data: data})
}

func discardLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt)
}
