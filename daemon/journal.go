package daemon

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/sirupsen/logrus"
)

// SyslogIdentifier is the SYSLOG_IDENTIFIER of every entry pullguard
// writes, so `journalctl -t pullguard` finds them.
const SyslogIdentifier = "pullguard"

// maxFieldNameLength is journald's limit; longer names are dropped.
const maxFieldNameLength = 64

// JournalFieldName turns a logrus field key into a name journald keeps:
// uppercase letters, digits and underscores, not starting with an
// underscore (reserved for trusted fields) or a digit, at most 64 bytes.
// journald silently drops any other name, and the field with it.
func JournalFieldName(key string) string {
	var b strings.Builder
	b.Grow(len(key))
	for _, c := range key { // by rune: one '_' per foreign character
		switch {
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b.WriteRune(c)
		case c >= 'a' && c <= 'z':
			b.WriteRune(c - 'a' + 'A')
		default:
			b.WriteByte('_')
		}
	}
	name := strings.TrimLeft(b.String(), "_")
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		name = "FIELD_" + name
	}
	if len(name) > maxFieldNameLength {
		name = name[:maxFieldNameLength]
	}
	return name
}

// reservedFields are set by the hook itself; a logrus field that would
// land on one of them is renamed rather than allowed to overwrite it.
var reservedFields = map[string]bool{
	"MESSAGE":           true,
	"PRIORITY":          true,
	"SYSLOG_IDENTIFIER": true,
}

// journalPriority maps logrus levels to syslog priorities.
func journalPriority(l logrus.Level) journal.Priority {
	switch l {
	case logrus.PanicLevel:
		return journal.PriEmerg
	case logrus.FatalLevel:
		return journal.PriCrit
	case logrus.ErrorLevel:
		return journal.PriErr
	case logrus.WarnLevel:
		return journal.PriWarning
	case logrus.InfoLevel:
		return journal.PriInfo
	default: // debug, trace
		return journal.PriDebug
	}
}

// journalSender is journal.Send's signature; tests substitute a recorder.
type journalSender func(message string, priority journal.Priority, vars map[string]string) error

// JournalHook writes every logrus entry to journald as one structured
// entry: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and one field per logrus
// field, its name made acceptable to journald by JournalFieldName.
type JournalHook struct {
	send       journalSender
	identifier string
	// fallback receives an entry journald refused (journald restarting,
	// its socket gone), so that no enforcement record is lost silently.
	// Under systemd, stderr still ends up in the journal, without fields.
	fallback          io.Writer
	fallbackFormatter logrus.Formatter
}

var _ logrus.Hook = (*JournalHook)(nil)

// NewJournalHook returns a hook that sends entries with journal.Send and
// writes the ones journald refuses to fallback (nil: drop them).
func NewJournalHook(fallback io.Writer) *JournalHook {
	return &JournalHook{
		send:              journal.Send,
		identifier:        SyslogIdentifier,
		fallback:          fallback,
		fallbackFormatter: &logrus.TextFormatter{DisableColors: true, FullTimestamp: true},
	}
}

// Levels is every level: the logger's own level does the filtering.
func (h *JournalHook) Levels() []logrus.Level { return logrus.AllLevels }

// Fire sends one entry. It never returns an error: logrus would print
// "Failed to fire hook" and lose the entry; the fallback writer keeps it.
func (h *JournalHook) Fire(e *logrus.Entry) error {
	msg, prio, vars := h.journalEntry(e)
	if err := h.send(msg, prio, vars); err != nil && h.fallback != nil {
		line, ferr := h.fallbackFormatter.Format(e)
		if ferr != nil {
			line = []byte(e.Message + "\n")
		}
		fmt.Fprintf(h.fallback, "journald refused an entry (%v): %s", err, line)
	}
	return nil
}

// journalEntry builds what is sent for e.
func (h *JournalHook) journalEntry(e *logrus.Entry) (string, journal.Priority, map[string]string) {
	vars := make(map[string]string, len(e.Data)+1)
	vars["SYSLOG_IDENTIFIER"] = h.identifier
	// Sorted, so that when two keys map to one name the result does not
	// depend on map order.
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := JournalFieldName(k)
		if reservedFields[name] {
			name = "FIELD_" + name
		}
		vars[name] = stringify(e.Data[k])
	}
	return e.Message, journalPriority(e.Level), vars
}

// stringify renders a field value; fmt.Sprint calls Error and String and
// survives a nil pointer behind an interface.
func stringify(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}
