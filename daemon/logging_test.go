package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/sirupsen/logrus"
)

// fakeJournald makes a real unix datagram socket where journald's would be.
func fakeJournald(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "socket")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestNewLoggerTarget(t *testing.T) {
	socket := fakeJournald(t)
	missing := filepath.Join(t.TempDir(), "no-socket")
	tests := map[string]struct {
		target, socket string
		env            map[string]string
		wantJournald   bool
	}{
		"auto, journald socket present":        {LogTargetAuto, socket, nil, true},
		"auto, no journald":                    {LogTargetAuto, missing, nil, false},
		"auto, under systemd (JOURNAL_STREAM)": {LogTargetAuto, missing, map[string]string{"JOURNAL_STREAM": "8:1234"}, true},
		"auto, under systemd (INVOCATION_ID)":  {LogTargetAuto, missing, map[string]string{"INVOCATION_ID": "abc"}, true},
		"empty target means auto":              {"", socket, nil, true},
		"journald":                             {LogTargetJournald, socket, nil, true},
		"stderr even with journald present":    {LogTargetStderr, socket, map[string]string{"INVOCATION_ID": "abc"}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var sent []string
			var stderr bytes.Buffer
			log, err := NewLogger(tc.target, LogFormatText, "info",
				WithJournalSocket(tc.socket), WithGetenv(env(tc.env)), WithStderr(&stderr),
				withJournalSender(func(msg string, _ journal.Priority, _ map[string]string) error {
					sent = append(sent, msg)
					return nil
				}))
			if err != nil {
				t.Fatal(err)
			}
			log.Info("hello")
			gotJournald := len(sent) == 1
			if gotJournald != tc.wantJournald {
				t.Errorf("sent to journald: %v, want %v", gotJournald, tc.wantJournald)
			}
			// Never both: under systemd stderr is in the journal too.
			if gotStderr := strings.Contains(stderr.String(), "hello"); gotStderr == tc.wantJournald {
				t.Errorf("written to stderr: %v (%q), want %v", gotStderr, stderr.String(), !tc.wantJournald)
			}
		})
	}
}

func TestNewLoggerErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-socket")
	tests := map[string]struct {
		target, format, level string
		want                  string
	}{
		"unknown target":          {"syslog", "text", "info", `log target "syslog"`},
		"unknown format":          {"stderr", "xml", "info", `log format "xml"`},
		"unknown level":           {"stderr", "text", "loud", `log level "loud"`},
		"journald but no journal": {"journald", "text", "info", "no-socket does not exist"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := NewLogger(tc.target, tc.format, tc.level, WithJournalSocket(missing), WithGetenv(env(nil)))
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrLogConfig) {
				t.Errorf("error %v does not wrap ErrLogConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

func TestNewLoggerStderrFormats(t *testing.T) {
	t.Run("json", func(t *testing.T) {
		var stderr bytes.Buffer
		log, err := NewLogger(LogTargetStderr, LogFormatJSON, "debug", WithStderr(&stderr))
		if err != nil {
			t.Fatal(err)
		}
		log.WithField(FieldAction, "removed").Debug("removed docker image nginx")
		var got map[string]any
		if err := json.Unmarshal(stderr.Bytes(), &got); err != nil {
			t.Fatalf("not one JSON object: %q: %v", stderr.String(), err)
		}
		if got["msg"] != "removed docker image nginx" || got[FieldAction] != "removed" || got["level"] != "debug" {
			t.Errorf("got %v", got)
		}
	})
	t.Run("text, level filters", func(t *testing.T) {
		var stderr bytes.Buffer
		log, err := NewLogger(LogTargetStderr, LogFormatText, "warning", WithStderr(&stderr))
		if err != nil {
			t.Fatal(err)
		}
		log.Info("quiet")
		log.WithField(FieldAction, "removed").Warn("loud")
		out := stderr.String()
		if strings.Contains(out, "quiet") {
			t.Errorf("info entry written at level warning: %q", out)
		}
		if !strings.Contains(out, `msg=loud`) || !strings.Contains(out, "PULLGUARD_ACTION=removed") {
			t.Errorf("warning entry missing: %q", out)
		}
	})
}

func TestNewLoggerJournaldWritesNothingElse(t *testing.T) {
	// The logger's own output must stay silent with journald, even if a
	// caller formats entries: only the hook sends.
	log, err := NewLogger(LogTargetJournald, LogFormatText, "info",
		WithJournalSocket(fakeJournald(t)),
		withJournalSender(func(string, journal.Priority, map[string]string) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	if log.Out != io.Discard {
		t.Errorf("journald logger writes to %v, want io.Discard", log.Out)
	}
	if _, ok := log.Formatter.(discardFormatter); !ok {
		t.Errorf("formatter %T formats entries nobody reads", log.Formatter)
	}
	if n := len(log.Hooks[logrus.InfoLevel]); n != 1 {
		t.Errorf("%d hooks at info, want the journald hook", n)
	}
}
