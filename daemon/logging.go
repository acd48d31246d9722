package daemon

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Log targets, as given to --log-target.
const (
	// LogTargetAuto is journald when it is there (see NewLogger), else stderr.
	LogTargetAuto     = "auto"
	LogTargetJournald = "journald"
	LogTargetStderr   = "stderr"
)

// Log formats for stderr, as given to --log-format.
const (
	LogFormatText = "text"
	LogFormatJSON = "json"
)

// DefaultJournalSocket is where journald receives native-protocol entries.
const DefaultJournalSocket = "/run/systemd/journal/socket"

// ErrLogConfig is wrapped by every error about a bad logging setting.
var ErrLogConfig = errors.New("invalid logging configuration")

type loggerConfig struct {
	journalSocket string
	getenv        func(string) string
	stderr        io.Writer
	send          journalSender
}

// LoggerOption adjusts NewLogger, mainly so tests can point it elsewhere.
type LoggerOption func(*loggerConfig)

// WithJournalSocket sets the socket whose presence means journald runs
// (default /run/systemd/journal/socket). It only affects detection:
// entries are sent with go-systemd's journal package, which always uses
// the default socket.
func WithJournalSocket(path string) LoggerOption {
	return func(c *loggerConfig) { c.journalSocket = path }
}

// WithGetenv replaces os.Getenv for detecting systemd.
func WithGetenv(getenv func(string) string) LoggerOption {
	return func(c *loggerConfig) { c.getenv = getenv }
}

// WithStderr replaces os.Stderr: where the stderr target writes, and where
// the journald target writes entries journald refuses.
func WithStderr(w io.Writer) LoggerOption {
	return func(c *loggerConfig) { c.stderr = w }
}

// withJournalSender replaces journal.Send (tests only).
func withJournalSender(send journalSender) LoggerOption {
	return func(c *loggerConfig) { c.send = send }
}

// NewLogger builds the daemon's logger.
//
// target is auto, journald or stderr. auto picks journald when the process
// runs under systemd ($JOURNAL_STREAM or $INVOCATION_ID set), or when
// journald's socket exists and stderr is not a terminal; stderr otherwise. With journald, entries go only to
// the journal: under systemd stderr is captured by journald too, and
// writing both would log everything twice.
//
// format (text or json) applies to stderr; level is a logrus level name
// (trace, debug, info, warning, error, fatal, panic).
func NewLogger(target, format, level string, opts ...LoggerOption) (*logrus.Logger, error) {
	cfg := loggerConfig{
		journalSocket: DefaultJournalSocket,
		getenv:        os.Getenv,
		stderr:        os.Stderr,
	}
	for _, o := range opts {
		o(&cfg)
	}

	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("%w: log level %q: expected trace, debug, info, warning, error, fatal or panic", ErrLogConfig, level)
	}
	var formatter logrus.Formatter
	switch format {
	case LogFormatText, "":
		formatter = &logrus.TextFormatter{FullTimestamp: true}
	case LogFormatJSON:
		formatter = &logrus.JSONFormatter{}
	default:
		return nil, fmt.Errorf("%w: log format %q: expected text or json", ErrLogConfig, format)
	}

	var journald bool
	switch target {
	case LogTargetAuto, "":
		journald = journaldAvailable(cfg.getenv, cfg.journalSocket) &&
			(underSystemd(cfg.getenv) || !isTerminal(cfg.stderr))
	case LogTargetJournald:
		if !socketExists(cfg.journalSocket) {
			return nil, fmt.Errorf("%w: log target journald: %s does not exist (is systemd-journald running?)", ErrLogConfig, cfg.journalSocket)
		}
		journald = true
	case LogTargetStderr:
	default:
		return nil, fmt.Errorf("%w: log target %q: expected auto, journald or stderr", ErrLogConfig, target)
	}

	log := logrus.New()
	log.SetLevel(lvl)
	if !journald {
		log.SetOutput(cfg.stderr)
		log.SetFormatter(formatter)
		return log, nil
	}
	hook := NewJournalHook(cfg.stderr)
	if cfg.send != nil {
		hook.send = cfg.send
	}
	log.AddHook(hook)
	log.SetOutput(io.Discard)
	log.SetFormatter(discardFormatter{})
	return log, nil
}

// journaldAvailable is auto's choice: under systemd, or journald running.
func journaldAvailable(getenv func(string) string, socket string) bool {
	if underSystemd(getenv) {
		return true
	}
	return socketExists(socket)
}

func underSystemd(getenv func(string) string) bool {
	return getenv("JOURNAL_STREAM") != "" || getenv("INVOCATION_ID") != ""
}

// isTerminal reports whether w is a terminal: someone running pullguard by
// hand, outside systemd, wants to see its log where they typed the command.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// socketExists reports whether something listens on the datagram socket
// at path. A socket file alone is not enough: a stopped journald leaves its
// socket behind, and logging into it would send every entry to the
// fallback.
func socketExists(path string) bool {
	st, err := os.Stat(path)
	if err != nil || st.Mode()&os.ModeSocket == 0 {
		return false
	}
	c, err := net.Dial("unixgram", path)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// discardFormatter spares formatting entries that only the hook sends.
type discardFormatter struct{}

func (discardFormatter) Format(*logrus.Entry) ([]byte, error) { return nil, nil }
