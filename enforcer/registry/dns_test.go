package registry

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer answers every question on a loopback UDP port with rcode, the
// way a real DNS server answers for a name that does not exist (NXDOMAIN)
// or fails (SERVFAIL). It returns a resolver that asks it alone, so that no
// question leaves the machine.
func dnsServer(t *testing.T, rcode dnsmessage.RCode) *net.Resolver {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			var q dnsmessage.Message
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			q.Header.Response, q.Header.RecursionAvailable, q.Header.RCode = true, true, rcode
			q.Answers, q.Authorities, q.Additionals = nil, nil, nil
			if out, err := q.Pack(); err == nil {
				_, _ = conn.WriteTo(out, from)
			}
		}
	}()
	addr := conn.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", addr)
	}}
}

const someDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000001"

// A registry host DNS says does not exist serves nothing: a definite "not
// served", not a failure to ask (issue 24: an attacker names content after
// a made-up host under an allowed host glob).
func TestHasManifestNoSuchHostIsNotServed(t *testing.T) {
	c := newClient(Options{Timeout: 2 * time.Second}, dnsServer(t, dnsmessage.RCodeNameError))
	served, err := c.HasManifest(context.Background(), "ghost.x1.mirror.example.net/app", someDigest)
	if err != nil || served {
		t.Fatalf("HasManifest on a host that does not exist = %v, %v; want false, nil", served, err)
	}
}

// A DNS server that fails is no answer: the question stays open.
func TestHasManifestDNSFailureIsNoAnswer(t *testing.T) {
	c := newClient(Options{Timeout: 2 * time.Second}, dnsServer(t, dnsmessage.RCodeServerFailure))
	served, err := c.HasManifest(context.Background(), "ghost.x1.mirror.example.net/app", someDigest)
	if err == nil {
		t.Fatalf("HasManifest with a failing DNS server = %v, nil; want an error", served)
	}
	if NoSuchHost(err) {
		t.Errorf("NoSuchHost(%v) = true for SERVFAIL", err)
	}
}

// A DNS server that does not answer at all is no answer either.
func TestHasManifestDNSTimeoutIsNoAnswer(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	silent := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", conn.LocalAddr().String())
	}}
	c := newClient(Options{Timeout: 500 * time.Millisecond}, silent)
	_, err = c.HasManifest(context.Background(), "ghost.x1.mirror.example.net/app", someDigest)
	if err == nil || NoSuchHost(err) {
		t.Fatalf("HasManifest with a silent DNS server: err = %v; want an error that is not NoSuchHost", err)
	}
}

func TestNoSuchHost(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&net.DNSError{Err: "no such host", Name: "a.b", IsNotFound: true}, true},
		{&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", IsNotFound: true}}, true},
		{&net.DNSError{Err: "server misbehaving", IsTemporary: true}, false},
		{&net.DNSError{Err: "i/o timeout", IsTimeout: true}, false},
		{errors.New("connection refused"), false},
	} {
		if got := NoSuchHost(tc.err); got != tc.want {
			t.Errorf("NoSuchHost(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
