package daemon

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pullguard/pullguard/enforcer"
)

// TestJournaldRoundTrip sends a Reporter entry through the real journald
// hook and reads it back with journalctl, as an SRE would.
func TestJournaldRoundTrip(t *testing.T) {
	if !socketExists(DefaultJournalSocket) {
		msg := "systemd-journald is not running (no " + DefaultJournalSocket + "); start it with: mkdir -p /run/systemd/journal && /lib/systemd/systemd-journald &"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}

	var stderr bytes.Buffer
	log, err := NewLogger(LogTargetJournald, LogFormatText, "info", WithStderr(&stderr))
	if err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, testPolicy)
	r := NewReporter(ReporterConfig{Log: log, Policy: fixedPolicy{p}})
	stop := runReporter(t, r)

	// The container ID is unique per run so the entry is told apart from
	// those of earlier runs.
	var nonce [32]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		t.Fatal(err)
	}
	cid := hex.EncodeToString(nonce[:])
	r.Report(enforcer.Record{
		Action: enforcer.Stopped, Runtime: enforcer.RuntimeDocker, Event: "reconcile", ContainerID: cid,
		Mode: p.Mode, Decision: p.Decide("localhost:5000/evil/miner:1", testTime),
	})
	stop() // writes everything queued
	if stderr.Len() != 0 {
		t.Errorf("journald refused the entry: %s", stderr.String())
	}

	var entry map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for entry == nil {
		out, err := exec.Command("journalctl", "-o", "json", "--no-pager",
			"MESSAGE_ID="+MessageIDActionTaken, FieldContainerID+"="+cid).Output()
		if err != nil {
			t.Fatalf("journalctl: %v", err)
		}
		if line := strings.TrimSpace(string(out)); line != "" {
			if err := json.Unmarshal([]byte(strings.Split(line, "\n")[0]), &entry); err != nil {
				t.Fatalf("journalctl output %q: %v", line, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("entry not in the journal after 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := map[string]string{
		"MESSAGE":           "stopped and removed docker container " + cid[:12] + " (image localhost:5000/evil/miner:1): no allow rule matches",
		"PRIORITY":          "4",
		"SYSLOG_IDENTIFIER": "pullguard",
		FieldMessageID:      MessageIDActionTaken,
		FieldAction:         "stopped",
		FieldImage:          "localhost:5000/evil/miner:1",
		FieldContainerID:    cid,
		FieldRuntime:        "docker",
		FieldEvent:          "reconcile",
		FieldReason:         "no allow rule matches",
		FieldMode:           "enforce",
		FieldPolicyHash:     p.Hash,
	}
	for k, v := range want {
		if entry[k] != v {
			t.Errorf("%s = %v, want %q", k, entry[k], v)
		}
	}
	if _, ok := entry[FieldNamespace]; ok {
		t.Errorf("empty %s written", FieldNamespace)
	}
}
