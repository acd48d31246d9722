package daemon

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/pullguard/pullguard/enforcer"
)

// Defaults of ReporterConfig.
const (
	DefaultFloodWindow       = time.Minute
	DefaultFloodKeys         = 4096
	DefaultReportQueueLength = 1024
)

// ReporterConfig configures a Reporter.
type ReporterConfig struct {
	// Log receives the entries; nil means logrus' standard logger.
	Log *logrus.Logger
	// Policy, when set, adds PULLGUARD_POLICY_HASH: the hash of the policy
	// in force when the record was reported (the one that decided, unless
	// a reload landed in between).
	Policy enforcer.PolicySource
	// FloodWindow is how long identical records (same action, runtime,
	// namespace, image and reason) are logged only once; 0 means
	// DefaultFloodWindow, negative turns flood control off.
	FloodWindow time.Duration
	// FloodKeys bounds how many distinct records flood control remembers.
	FloodKeys int
	// QueueLength is how many entries may wait for the log before new ones
	// are dropped (and counted) rather than block the caller.
	QueueLength int
	// Now is the clock for flood control (tests); default time.Now.
	Now func() time.Time
}

// Reporter turns enforcement records into journal entries, one per record,
// with flood control. Report never blocks: entries are queued and written by
// Run, so a slow journald cannot stall event handling. Safe for concurrent
// use.
type Reporter struct {
	log     *logrus.Logger
	policy  enforcer.PolicySource
	now     func() time.Time
	flood   *floodGate
	queue   chan *queuedReport // pointers: 1,024 slots of a whole record would hold 300 KB
	dropped atomic.Int64
}

var _ enforcer.Reporter = (*Reporter)(nil)

type queuedReport struct {
	rec     enforcer.Record
	repeats int
	hash    string
}

// NewReporter returns a Reporter; start its Run before reporting, or
// entries wait in (and then overflow) the queue.
func NewReporter(cfg ReporterConfig) *Reporter {
	if cfg.FloodWindow == 0 {
		cfg.FloodWindow = DefaultFloodWindow
	}
	if cfg.FloodKeys <= 0 {
		cfg.FloodKeys = DefaultFloodKeys
	}
	if cfg.QueueLength <= 0 {
		cfg.QueueLength = DefaultReportQueueLength
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	return &Reporter{
		log:    cfg.Log,
		policy: cfg.Policy,
		now:    cfg.Now,
		flood:  newFloodGate(cfg.FloodWindow, cfg.FloodKeys),
		queue:  make(chan *queuedReport, cfg.QueueLength),
	}
}

// Report queues rec for logging unless flood control holds it back.
func (r *Reporter) Report(rec enforcer.Record) {
	ok, repeats, evicted := r.flood.admit(rec, r.now())
	if evicted != nil {
		r.enqueue(queuedReport{rec: evicted.rec, repeats: evicted.repeats, hash: r.hashOf(evicted.rec)})
	}
	if ok {
		r.enqueue(queuedReport{rec: rec, repeats: repeats, hash: r.hashOf(rec)})
	}
}

// hashOf is the hash of the policy that decided rec: the decision's own,
// or, for a record made without one, the policy in force.
func (r *Reporter) hashOf(rec enforcer.Record) string {
	if rec.Decision.PolicyHash != "" {
		return rec.Decision.PolicyHash
	}
	return r.policyHash()
}

func (r *Reporter) policyHash() string {
	if r.policy == nil {
		return ""
	}
	if p := r.policy.Current(); p != nil {
		return p.Hash
	}
	return ""
}

func (r *Reporter) enqueue(q queuedReport) {
	select {
	case r.queue <- &q:
	default:
		r.dropped.Add(1)
	}
}

// Run writes queued entries until ctx is done, then writes what is still
// queued and the counts flood control still holds, and returns nil.
func (r *Reporter) Run(ctx context.Context) error {
	tick := r.flood.window / 4
	if tick <= 0 {
		tick = time.Hour // flood control is off: nothing to expire
	}
	if tick < 100*time.Millisecond {
		tick = 100 * time.Millisecond
	}
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for {
		select {
		case q := <-r.queue:
			r.write(*q)
		case <-ticker.C:
			r.writeSummaries(r.flood.expire(r.now()))
		case <-ctx.Done():
			r.drainQueue()
			r.writeSummaries(r.flood.drain())
			return nil
		}
	}
}

// drainQueue writes what is queued now, without waiting for more.
func (r *Reporter) drainQueue() {
	for {
		select {
		case q := <-r.queue:
			r.write(*q)
		default:
			return
		}
	}
}

func (r *Reporter) writeSummaries(due []floodSummary) {
	for _, s := range due {
		r.write(queuedReport{rec: s.rec, repeats: s.repeats, hash: r.hashOf(s.rec)})
	}
}

func (r *Reporter) write(q queuedReport) {
	level, msg, fields := renderRecord(q.rec, q.repeats, q.hash)
	e := r.log.WithFields(fields)
	if !q.rec.Time.IsZero() {
		e = e.WithTime(q.rec.Time)
	}
	e.Log(level, msg)
	if n := r.dropped.Swap(0); n > 0 {
		r.log.WithFields(logrus.Fields{
			FieldMessageID: MessageIDReportsDropped,
			FieldDropped:   n,
		}).Errorf("dropped %d enforcement log entries: the log could not keep up (the actions were still taken)", n)
	}
}

// messageIDOf is the MESSAGE_ID for an action.
func messageIDOf(a enforcer.Action) string {
	switch a {
	case enforcer.Removed, enforcer.Untagged, enforcer.Stopped:
		return MessageIDActionTaken
	case enforcer.WouldRemove, enforcer.WouldStop, enforcer.WouldBlock:
		return MessageIDWouldAct
	case enforcer.Blocked:
		return MessageIDBlocked
	case enforcer.Failed:
		return MessageIDActionFailed
	case enforcer.Reported:
		return MessageIDRunningReported
	case enforcer.Held:
		return MessageIDHeld
	}
	return ""
}

// imageOf is the image as PULLGUARD_IMAGE shows it: the normalized
// reference, or what the runtime gave when it did not parse.
func imageOf(rec enforcer.Record) string {
	if rec.Image != "" {
		return rec.Image
	}
	if rec.Decision.Reference != "" {
		return rec.Decision.Reference
	}
	return rec.Decision.Input
}

// renderRecord is the entry for one record: its level, MESSAGE and fields.
// repeats is how many identical records flood control suppressed before it.
func renderRecord(rec enforcer.Record, repeats int, policyHash string) (logrus.Level, string, logrus.Fields) {
	d := rec.Decision
	image := imageOf(rec)
	fields := logrus.Fields{}
	set := func(k, v string) {
		if v != "" {
			fields[k] = v
		}
	}
	set(FieldMessageID, messageIDOf(rec.Action))
	set(FieldAction, string(rec.Action))
	set(FieldImage, image)
	set(FieldImageID, rec.ImageID)
	set(FieldContainerID, rec.ContainerID)
	set(FieldPlugin, rec.Plugin)
	set(FieldRuntime, rec.Runtime)
	set(FieldNamespace, rec.Namespace)
	set(FieldEvent, rec.Event)
	set(FieldHook, rec.Hook)
	set(FieldRule, d.RuleSource())
	set(FieldReason, d.Reason)
	set(FieldMode, string(rec.Mode))
	set(FieldResembles, d.Resembles)
	if d.Signature != nil {
		set(FieldSignature, d.Signature.Result.Field())
	}
	if d.Attestation != nil {
		set(FieldAttestation, d.Attestation.Field())
	}
	set(FieldPolicyHash, policyHash)
	if rec.Err != nil {
		set(FieldError, rec.Err.Error())
	}
	if repeats > 0 {
		fields[FieldRepeats] = repeats
	}

	level := logrus.WarnLevel
	if rec.Action == enforcer.Failed {
		level = logrus.ErrorLevel
	}
	return level, recordMessage(rec, image, repeats), fields
}

// recordMessage is the MESSAGE a person reads, e.g.
// "removed docker image localhost:5000/evil/miner:latest: no allow rule matches".
func recordMessage(rec enforcer.Record, image string, repeats int) string {
	switch {
	case rec.Decision.Reference == "" && image != "":
		// Not a reference: quote it, as it came from outside and may hold
		// anything, newlines included.
		image = strconv.Quote(image)
	case image == "" && rec.ImageID != "":
		image = rec.ImageID
	case image == "":
		image = "(unknown)"
	}
	runtime := rec.Runtime
	if runtime == "" {
		runtime = "runtime"
	}
	var object string
	switch {
	case rec.ContainerID != "":
		object = fmt.Sprintf("%s container %s (image %s)", runtime, shortID(rec.ContainerID), image)
	case rec.Plugin != "":
		object = fmt.Sprintf("%s plugin %s", runtime, rec.Plugin)
	default:
		object = fmt.Sprintf("%s image %s", runtime, image)
	}
	if rec.Namespace != "" {
		object += " in namespace " + rec.Namespace
	}

	if rec.Action == enforcer.Held && rec.ContainerID == "" && rec.Image == "" && rec.ImageID == "" && rec.Decision.Input == "" {
		return fmt.Sprintf("held %s removals and stops: %s", runtime, rec.Decision.Reason)
	}
	var b strings.Builder
	var tail string
	switch rec.Action {
	case enforcer.Removed:
		b.WriteString("removed " + object)
	case enforcer.Untagged:
		b.WriteString("untagged " + object)
	case enforcer.Stopped:
		b.WriteString("stopped and removed " + object)
	case enforcer.Blocked:
		b.WriteString("blocked a request for " + object)
	case enforcer.Reported:
		b.WriteString(object + " runs a disallowed image")
		tail = "; left running as the policy says running: keep"
	case enforcer.WouldRemove:
		b.WriteString("audit: would remove " + object)
	case enforcer.WouldStop:
		b.WriteString("audit: would stop " + object)
	case enforcer.WouldBlock:
		b.WriteString("audit: would block a request for " + object)
	case enforcer.Failed:
		b.WriteString("failed to act on " + object)
		if rec.Err != nil {
			b.WriteString(": " + rec.Err.Error())
		}
		b.WriteString("; it is not allowed")
	default:
		b.WriteString(string(rec.Action) + " " + object)
	}
	d := rec.Decision
	if d.Reason != "" {
		b.WriteString(": " + d.Reason)
	}
	if src := d.RuleSource(); src != "" {
		b.WriteString(" (" + src + ")")
	}
	if d.Resembles != "" {
		b.WriteString("; it resembles the allowed " + d.Resembles)
	}
	b.WriteString(tail)
	if repeats > 0 {
		fmt.Fprintf(&b, " [and %d more times since the previous entry, suppressed by flood control]", repeats)
	}
	return b.String()
}

// shortID shortens a 64-hex-digit ID the way docker ps does.
func shortID(id string) string {
	if len(id) == 64 && strings.Trim(id, "0123456789abcdef") == "" {
		return id[:12]
	}
	return id
}
