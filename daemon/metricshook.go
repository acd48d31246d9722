package daemon

import (
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/daemon/metrics"
	"github.com/pullguard/pullguard/enforcer"
)

// MetricsHook feeds m from the daemon's journal entries that mark a state
// change (a policy loaded or rejected, a runtime connected or lost, log
// entries dropped): each such entry has a fixed MESSAGE_ID, a tested
// contract, so the metrics follow exactly what the journal says. Add it to
// the daemon's logger. Entries below the logger's level never reach a hook,
// so the level must be info or lower for connections and loads to count.
func MetricsHook(m *metrics.Metrics) logrus.Hook { return metricsHook{m} }

type metricsHook struct{ m *metrics.Metrics }

func (metricsHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h metricsHook) Fire(e *logrus.Entry) error {
	id, _ := e.Data[FieldMessageID].(string)
	switch id {
	case MessageIDPolicyLoaded:
		// The load at start-up is not a reload; SetPolicy notes it.
		if hash, ok := e.Data[FieldPolicyHash].(string); ok && e.Data[FieldTrigger] != TriggerStart {
			h.m.PolicyLoaded(hash)
		}
	case MessageIDPolicyInvalid:
		msg, _ := e.Data[FieldError].(string)
		h.m.PolicyRejected(errors.New(msg))
	case MessageIDRuntimeConnected, MessageIDRuntimeDisconnected:
		if rt, ok := e.Data[enforcer.FieldRuntime].(string); ok {
			h.m.Connected(rt, id == MessageIDRuntimeConnected)
		}
	case MessageIDReportsDropped:
		var n int
		_, _ = fmt.Sscan(fmt.Sprint(e.Data[FieldDropped]), &n)
		h.m.LogEntriesDropped(n)
	}
	return nil
}
