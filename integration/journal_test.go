package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// JournalEntries returns the journal entries matching all of matches ("FIELD=value", as
// journalctl takes them), oldest first. journald keeps entries across runs, so match on
// something unique to the test, such as a UniqueName; a daemon's own entries are its Entries.
func JournalEntries(t testing.TB, matches ...string) []map[string]string {
	t.Helper()
	for _, m := range matches {
		if !strings.Contains(m, "=") || strings.HasPrefix(m, "-") {
			t.Fatalf("JournalEntries: %q is not a FIELD=value match", m)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	// --all: without it journalctl replaces values over 4 KiB with null.
	args := append([]string{"--output=json", "--no-pager", "--all", "--quiet"}, matches...)
	out, err := exec.CommandContext(ctx, "journalctl", args...).Output()
	if err != nil {
		t.Fatalf("journalctl %s: %v%s", strings.Join(args, " "), err, stderrOf(err))
	}
	entries, err := parseJournalJSON(out)
	if err != nil {
		t.Fatalf("journalctl %s: %v", strings.Join(args, " "), err)
	}
	return entries
}

// WaitJournal waits until at least one entry matches and returns the matching entries; the
// daemon under test logs asynchronously.
func WaitJournal(t testing.TB, deadline time.Duration, matches ...string) []map[string]string {
	t.Helper()
	var entries []map[string]string
	Eventually(t, deadline, func() (bool, string) {
		entries = JournalEntries(t, matches...)
		return len(entries) > 0, fmt.Sprintf("no journal entry matches %q", matches)
	})
	return entries
}

// Entries are the daemon's journal entries matching matches, oldest first: those of its _PID
// written since it started (journald keeps entries across runs, and PIDs are reused).
func (p *Pullguard) Entries(t testing.TB, matches ...string) []map[string]string {
	t.Helper()
	all := JournalEntries(t, append([]string{"_PID=" + strconv.Itoa(p.PID())}, matches...)...)
	since := p.since.Add(-time.Second).UnixMicro() // journald and we read one clock; be lenient
	return slices.DeleteFunc(all, func(e map[string]string) bool {
		ts, err := strconv.ParseInt(e["__REALTIME_TIMESTAMP"], 10, 64)
		return err != nil || ts < since
	})
}

// WaitEntries waits until at least n of the daemon's journal entries match and returns them
// all.
func (p *Pullguard) WaitEntries(t testing.TB, deadline time.Duration, n int, matches ...string) []map[string]string {
	t.Helper()
	var entries []map[string]string
	Eventually(t, deadline, func() (bool, string) {
		entries = p.Entries(t, matches...)
		return len(entries) >= n, fmt.Sprintf("%d journal entries of pullguard (pid %d) match %q, want %d; its output:\n%s",
			len(entries), p.PID(), matches, n, p.Output())
	})
	return entries
}

// WaitEntry waits for the daemon's first journal entry matching matches and returns it.
func (p *Pullguard) WaitEntry(t testing.TB, deadline time.Duration, matches ...string) map[string]string {
	t.Helper()
	return p.WaitEntries(t, deadline, 1, matches...)[0]
}

// requireFields fails the test for each field of want that entry does not hold with that value.
func requireFields(t testing.TB, entry, want map[string]string) {
	t.Helper()
	for field, value := range want {
		if got, ok := entry[field]; !ok || got != value {
			t.Errorf("journal entry %s = %q (present: %v), want %q (MESSAGE: %s)", field, got, ok, value, entry["MESSAGE"])
		}
	}
}

// parseJournalJSON decodes journalctl --output=json: one object per line, one member per field.
func parseJournalJSON(out []byte) ([]map[string]string, error) {
	var entries []map[string]string
	for line := range bytes.Lines(out) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(line, &raw); err != nil {
			return nil, fmt.Errorf("journal entry %q: %w", line, err)
		}
		entry := make(map[string]string, len(raw))
		for field, value := range raw {
			s, err := journalValue(value)
			if err != nil {
				return nil, fmt.Errorf("journal field %s=%s: %w", field, value, err)
			}
			entry[field] = s
		}
		entries = append(entries, entry)
	}
	return entries, nil
}

// journalValue decodes one field value of journalctl's JSON. journald stores bytes, so a value
// is a string when it is printable UTF-8, an array of byte values when it is not, and null when
// it was too large to show; a field given more than once in an entry is an array of such
// values, which are returned joined by newlines.
func journalValue(raw json.RawMessage) (string, error) {
	var s *string
	if err := json.Unmarshal(raw, &s); err == nil {
		if s == nil {
			return "", nil
		}
		return *s, nil
	}
	var bytesValue []byte
	var numbers []int
	if err := json.Unmarshal(raw, &numbers); err == nil {
		for _, n := range numbers {
			if n < 0 || n > 255 {
				return "", fmt.Errorf("byte value %d out of range", n)
			}
			bytesValue = append(bytesValue, byte(n))
		}
		return string(bytesValue), nil
	}
	var values []json.RawMessage
	if err := json.Unmarshal(raw, &values); err != nil {
		return "", fmt.Errorf("neither a string, bytes nor a list of values")
	}
	parts := make([]string, len(values))
	for i, v := range values {
		part, err := journalValue(v)
		if err != nil {
			return "", err
		}
		parts[i] = part
	}
	return strings.Join(parts, "\n"), nil
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

// TestJournalValue runs without runtimes: it pins the decoding of journalctl's JSON shapes.
func TestJournalValue(t *testing.T) {
	tests := map[string]struct {
		raw  string
		want string
	}{
		"string":            {`"pulled"`, "pulled"},
		"empty string":      {`""`, ""},
		"null (too large)":  {`null`, ""},
		"bytes (not UTF-8)": {`[104,105,255]`, "hi\xff"},
		"bytes (control)":   {`[97,1,98]`, "a\x01b"},
		"repeated field":    {`["a","b"]`, "a\nb"},
		"repeated mixed":    {`["a",[255]]`, "a\n\xff"},
		"repeated bytes":    {`[[97],[98]]`, "a\nb"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := journalValue(json.RawMessage(tc.raw))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("journalValue(%s) = %q, want %q", tc.raw, got, tc.want)
			}
		})
	}
	for _, raw := range []string{`{}`, `[300]`, `true`} {
		if got, err := journalValue(json.RawMessage(raw)); err == nil {
			t.Errorf("journalValue(%s) = %q, want an error", raw, got)
		}
	}
}
