package daemon

import (
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/daemon/metrics"
)

// MetricsHook counts, in m, the enforcement log entries the Reporter had to
// drop: it says so in an entry of its own (MessageIDReportsDropped, at error
// level, so the hook always sees it). Add it to the daemon's logger.
func MetricsHook(m *metrics.Metrics) logrus.Hook { return metricsHook{m} }

type metricsHook struct{ m *metrics.Metrics }

func (metricsHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h metricsHook) Fire(e *logrus.Entry) error {
	if e.Data[FieldMessageID] == MessageIDReportsDropped {
		var n int
		_, _ = fmt.Sscan(fmt.Sprint(e.Data[FieldDropped]), &n)
		h.m.LogEntriesDropped(n)
	}
	return nil
}
