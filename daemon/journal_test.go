package daemon

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/sirupsen/logrus"
)

func TestJournalFieldName(t *testing.T) {
	tests := map[string]struct {
		in, want string
	}{
		"already valid":        {"PULLGUARD_ACTION", "PULLGUARD_ACTION"},
		"lowercase":            {"error", "ERROR"},
		"dots and dashes":      {"image.id-short", "IMAGE_ID_SHORT"},
		"leading underscore":   {"_PID", "PID"},
		"leading punctuation":  {"-x", "X"},
		"leading digit":        {"1st", "FIELD_1ST"},
		"underscore and digit": {"__2", "FIELD_2"},
		"only punctuation":     {"...", "FIELD_"},
		"empty":                {"", "FIELD_"},
		"non-ASCII":            {"größe", "GR__E"},
		"space":                {"policy hash", "POLICY_HASH"},
		"too long":             {strings.Repeat("a", 70), strings.Repeat("A", 64)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := JournalFieldName(tc.in)
			if got != tc.want {
				t.Errorf("JournalFieldName(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if !validJournalName(got) {
				t.Errorf("JournalFieldName(%q) = %q, which journald would drop", tc.in, got)
			}
		})
	}
}

// validJournalName is journald's rule, written independently of the code
// under test.
func validJournalName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '_' || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func FuzzJournalFieldName(f *testing.F) {
	for _, s := range []string{"", "a", "_", "9", "PULLGUARD_X", "ü", "a.b-c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got := JournalFieldName(s); !validJournalName(got) {
			t.Errorf("JournalFieldName(%q) = %q, not a valid journal field name", s, got)
		}
	})
}

type sentEntry struct {
	msg  string
	prio journal.Priority
	vars map[string]string
}

func recordingHook(fail error) (*JournalHook, *[]sentEntry, *bytes.Buffer) {
	var sent []sentEntry
	var fallback bytes.Buffer
	h := NewJournalHook(&fallback)
	h.send = func(msg string, prio journal.Priority, vars map[string]string) error {
		sent = append(sent, sentEntry{msg, prio, vars})
		return fail
	}
	return h, &sent, &fallback
}

func TestJournalHookFields(t *testing.T) {
	h, sent, fallback := recordingHook(nil)
	log := logrus.New()
	log.SetOutput(&bytes.Buffer{})
	log.AddHook(h)

	log.WithFields(logrus.Fields{
		FieldMessageID:  MessageIDActionTaken,
		"image.ref":     "nginx",
		"count":         3,
		"message":       "a field called message",
		"_SYSTEMD_UNIT": "forged.service",
	}).WithError(errors.New("boom")).Warn("removed docker image nginx")

	if len(*sent) != 1 {
		t.Fatalf("sent %d entries, want 1", len(*sent))
	}
	got := (*sent)[0]
	if got.msg != "removed docker image nginx" {
		t.Errorf("MESSAGE = %q", got.msg)
	}
	if got.prio != journal.PriWarning {
		t.Errorf("PRIORITY = %d, want %d", got.prio, journal.PriWarning)
	}
	want := map[string]string{
		"SYSLOG_IDENTIFIER": "pullguard",
		"MESSAGE_ID":        MessageIDActionTaken,
		"IMAGE_REF":         "nginx",
		"COUNT":             "3",
		"ERROR":             "boom",
		// A field may not overwrite MESSAGE, nor pose as a trusted field.
		"FIELD_MESSAGE": "a field called message",
		"SYSTEMD_UNIT":  "forged.service",
	}
	if len(got.vars) != len(want) {
		t.Errorf("fields = %v, want %v", got.vars, want)
	}
	for k, v := range want {
		if got.vars[k] != v {
			t.Errorf("field %s = %q, want %q", k, got.vars[k], v)
		}
	}
	if fallback.Len() != 0 {
		t.Errorf("fallback written although journald accepted the entry: %q", fallback.String())
	}
}

func TestJournalPriority(t *testing.T) {
	tests := map[logrus.Level]journal.Priority{
		logrus.PanicLevel: journal.PriEmerg,
		logrus.FatalLevel: journal.PriCrit,
		logrus.ErrorLevel: journal.PriErr,
		logrus.WarnLevel:  journal.PriWarning,
		logrus.InfoLevel:  journal.PriInfo,
		logrus.DebugLevel: journal.PriDebug,
		logrus.TraceLevel: journal.PriDebug,
	}
	for lvl, want := range tests {
		t.Run(lvl.String(), func(t *testing.T) {
			if got := journalPriority(lvl); got != want {
				t.Errorf("journalPriority(%s) = %d, want %d", lvl, got, want)
			}
		})
	}
}

func TestJournalHookFallback(t *testing.T) {
	h, _, fallback := recordingHook(errors.New("connection refused"))
	e := &logrus.Entry{
		Logger:  logrus.New(),
		Data:    logrus.Fields{FieldAction: "removed"},
		Time:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Level:   logrus.WarnLevel,
		Message: "removed docker image nginx",
	}
	if err := h.Fire(e); err != nil {
		t.Fatalf("Fire returned %v; logrus would print it and drop the entry", err)
	}
	out := fallback.String()
	for _, want := range []string{"journald refused an entry (connection refused)", "removed docker image nginx", "PULLGUARD_ACTION=removed"} {
		if !strings.Contains(out, want) {
			t.Errorf("fallback output %q lacks %q", out, want)
		}
	}
}
