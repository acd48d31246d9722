package metrics

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// serveMetrics serves m's /metrics on a 127.0.0.1 port until the test ends
// and returns the address.
func serveMetrics(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(Options{Version: "test"}).ServeHTTP(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeHTTP: %v", err)
		}
	})
	return l.Addr().String()
}

const scrapeRequest = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"

// scrapeOn sends a scrape on c and reads the answer's status line, waiting
// at most wait.
func scrapeOn(c net.Conn, wait time.Duration) (string, error) {
	if _, err := io.WriteString(c, scrapeRequest); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.Status, err
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestServeLimitsConnections (issue 22): the endpoint serves at most
// MaxConnections at once; one more waits, unserved, until one of them
// closes, and is then answered.
func TestServeLimitsConnections(t *testing.T) {
	addr := serveMetrics(t)
	held := make([]net.Conn, MaxConnections)
	for i := range held {
		held[i] = dial(t, addr)
		// A finished scrape leaves the connection open (keep-alive), and
		// counted: no test timing decides whether it was accepted.
		if status, err := scrapeOn(held[i], 5*time.Second); err != nil || status != "200 OK" {
			t.Fatalf("scrape %d: %q, %v", i+1, status, err)
		}
	}
	extra := dial(t, addr)
	status, err := scrapeOn(extra, 500*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connection %d beyond the limit of %d was served (%q, %v)", MaxConnections+1, MaxConnections, status, err)
	}
	held[0].Close()
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(extra), nil)
	if err != nil {
		t.Fatalf("the waiting scrape was not answered once a connection closed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the waiting scrape: %s", resp.Status)
	}
}

// TestServeDropsStalledClients: a connection that never finishes its
// header is closed after ReadHeaderTimeout (it would hold a slot for ever
// otherwise), and an oversized header is refused.
func TestServeDropsStalledClients(t *testing.T) {
	addr := serveMetrics(t)
	t.Run("stalled header", func(t *testing.T) {
		t.Parallel()
		c := dial(t, addr)
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_ = c.SetReadDeadline(start.Add(ReadHeaderTimeout + 5*time.Second))
		_, err := io.Copy(io.Discard, c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a connection with half a header was still open after %v", time.Since(start))
		}
		if took := time.Since(start); took < ReadHeaderTimeout-time.Second {
			t.Errorf("closed after %v, before ReadHeaderTimeout (%v)", took, ReadHeaderTimeout)
		}
	})
	t.Run("oversized header", func(t *testing.T) {
		t.Parallel()
		c := dial(t, addr)
		req := "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2*maxHeaderBytes) + "\r\n\r\n"
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("a %d-byte header: %s, want 431", 2*maxHeaderBytes, resp.Status)
		}
	})
}
