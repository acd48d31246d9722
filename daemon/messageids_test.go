package daemon

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestMessageIDs(t *testing.T) {
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seenID := map[string]string{}
	seenName := map[string]bool{}
	for _, m := range MessageIDs() {
		if !hex32.MatchString(m.ID) {
			t.Errorf("%s: MESSAGE_ID %q is not 32 lowercase hex digits", m.Name, m.ID)
		}
		if other, dup := seenID[m.ID]; dup {
			t.Errorf("%s and %s share MESSAGE_ID %s", m.Name, other, m.ID)
		}
		seenID[m.ID] = m.Name
		if seenName[m.Name] {
			t.Errorf("name %s listed twice", m.Name)
		}
		seenName[m.Name] = true
		if m.Summary == "" || m.Description == "" || strings.Contains(m.Summary, "\n") {
			t.Errorf("%s: summary %q / description %q: both needed, summary on one line", m.Name, m.Summary, m.Description)
		}
	}

	// Every MessageID constant in the source is listed, under its name:
	// the journald catalog is generated from the list.
	src, err := os.ReadFile("messageids.go")
	if err != nil {
		t.Fatal(err)
	}
	consts := regexp.MustCompile(`(?m)^\s*MessageID(\w+)\s*=\s*(?:"([0-9a-f]+)"|enforcer\.MessageID\w+)`).FindAllStringSubmatch(string(src), -1)
	for _, c := range consts {
		if c[2] == "" { // defined in enforcer, where the guards log it
			c[2] = map[string]string{"RuntimeConnected": MessageIDRuntimeConnected, "RuntimeDisconnected": MessageIDRuntimeDisconnected}[c[1]]
		}
	}
	if len(consts) != len(MessageIDs()) {
		t.Errorf("%d MessageID constants, %d listed by MessageIDs()", len(consts), len(MessageIDs()))
	}
	for _, c := range consts {
		if seenID[c[2]] != c[1] {
			t.Errorf("constant MessageID%s = %s is listed as %q", c[1], c[2], seenID[c[2]])
		}
	}
}
