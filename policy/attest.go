package policy

import (
	"sort"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/interpreter"
)

// Attestation requirements (attestations:). An allow rule may list in-toto
// predicate types, each with its signers and a CEL condition; it then
// matches a reference only when, for every listed type, the newest
// statement of that type whose subject is the reference's manifest digest,
// verified by one of the type's signers, satisfies the condition. As with
// signed-by, the core never contacts a registry: a decision that waits for
// attestations says so (Decision.NeedsAttestations), the caller asks an
// AttestationSource (enforcer/signature verifies at the registry) and the
// core decides again with the verified statements. Conditions are
// evaluated here, with the time the caller passes in, so that a verdict
// resting on a freshness condition is never older than its judgement.

// AttestationRequirement is one item of a rule's attestations: list.
type AttestationRequirement struct {
	// Type is the in-toto predicate type, as written
	// (https://slsa.dev/provenance/v1).
	Type string
	// SignedBy are the keys one of which must have signed the statement.
	SignedBy *KeySet
	// Condition is the CEL expression as written; empty: any verified
	// statement of the type will do.
	Condition string
	Source    Position
	// ID identifies what is verified (the type and the signers): answers
	// are kept per (digest, ID).
	ID string

	program  cel.Program
	readsNow bool
}

// ReadsNow reports whether the condition reads now: a verdict resting on
// it may change with nothing but time, and is judged again rather than kept.
func (q *AttestationRequirement) ReadsNow() bool { return q.readsNow }

// AttestationSource answers, for a rule with attestations that matches a
// name, which statements of a type the name's manifest digest has, each
// verified by one of the requirement's signers (enforcer/signature asks the
// registry). The core only asks, and evaluates the conditions itself.
type AttestationSource interface {
	Attestations(ref Ref, want *AttestationRequirement) AttestationResult
}

// AttestationStatus is what was found of one required type.
type AttestationStatus string

const (
	// AttestationNotChecked: nobody answered for the type.
	AttestationNotChecked AttestationStatus = ""
	// AttestationVerified: statements of the type, by a listed signer,
	// name the digest (AttestationResult); for a check, the newest one's
	// condition holds.
	AttestationVerified AttestationStatus = "verified"
	// AttestationMissing: the registry holds no statement of the type.
	AttestationMissing AttestationStatus = "missing"
	// AttestationInvalid: statements of the type exist, none by a listed
	// signer for this digest.
	AttestationInvalid AttestationStatus = "invalid"
	// AttestationFailed: the newest verified statement's condition is
	// false, or could not be evaluated on it.
	AttestationFailed AttestationStatus = "failed"
	// AttestationUnverifiable: no definite answer (registry unreachable,
	// verification turned off).
	AttestationUnverifiable AttestationStatus = "unverifiable"
)

// Statement is one verified in-toto statement.
type Statement struct {
	PredicateType string
	// Predicate is the predicate as JSON decodes into Go values
	// (map[string]any, []any, float64, string, bool, nil).
	Predicate any
	// Subject is the statement's subject list, decoded the same way.
	Subject []any
	// Key is the listed key that verified it; Format says how it was kept
	// ("cosign attestation", "Sigstore bundle").
	Key    *Key
	Format string
	// Signed is when the signature was made, where a verified timestamp
	// vouches for it; zero otherwise (a key's signature alone carries none).
	Signed time.Time
}

// AttestationResult is the answer for one requirement and digest.
type AttestationResult struct {
	Status AttestationStatus
	// Statements are the verified statements of the type naming the
	// digest, when Status is verified.
	Statements []Statement
	// Reason says why none verified, when Status is not verified.
	Reason string
}

// AttestationCheck on a decision names the attestation-requiring rule
// that allowed the reference, or the first one that would have allowed it
// but for its attestations, and what was found.
type AttestationCheck struct {
	Rule *Rule
	// Status is verified when every type passed; otherwise the status of
	// Failed, the first type that did not (not checked: no answer yet).
	Status AttestationStatus
	Failed *AttestationRequirement
	Reason string
}

// Field is the journal's PULLGUARD_ATTESTATION value: verified:<type> for
// each type when all passed, else <status>:<type> of the one that did not.
func (c *AttestationCheck) Field() string {
	if c.Status == AttestationVerified {
		parts := make([]string, len(c.Rule.Attestations))
		for i, q := range c.Rule.Attestations {
			parts[i] = "verified:" + q.Type
		}
		return strings.Join(parts, " ")
	}
	st := c.Status
	if st == AttestationNotChecked {
		st = AttestationUnverifiable
	}
	return string(st) + ":" + c.Failed.Type
}

// Attested holds a digest's attestation answers for one decision, and the
// conditions evaluated on them.
type Attested struct {
	// A rule lists a few types: a short list looked through costs less
	// than maps made for each decision.
	answers []answer
	checks  []evaluated
	now     time.Time
}

type answer struct {
	id  string
	res AttestationResult
}

type evaluated struct {
	q  *AttestationRequirement
	tc typeCheck
}

func (a *Attested) answer(id string) (AttestationResult, bool) {
	for _, x := range a.answers {
		if x.id == id {
			return x.res, true
		}
	}
	return AttestationResult{}, false
}

type typeCheck struct {
	status AttestationStatus
	reason string
}

// NeedsAttestations returns the requirements a caller must answer before
// the decision is final, or nil.
func (d Decision) NeedsAttestations() []*AttestationRequirement {
	if d.Attestation != nil && d.Attestation.Status == AttestationNotChecked {
		return d.Attestation.Rule.Attestations
	}
	return nil
}

// AnswerAttestations records, for each requirement d waits for that ev has
// no answer to, what ask says. It reports whether d waited.
func (ev *Evidence) AnswerAttestations(d Decision, ask func(*AttestationRequirement) AttestationResult) bool {
	reqs := d.NeedsAttestations()
	if reqs == nil {
		return false
	}
	if ev.Attestations == nil {
		ev.Attestations = &Attested{answers: make([]answer, 0, len(reqs))}
	}
	a := ev.Attestations
	for _, q := range reqs {
		if _, ok := a.answer(q.ID); !ok {
			a.answers = append(a.answers, answer{q.ID, ask(q)})
		}
	}
	return true
}

// attestMatch is what the matcher remembers of attestation-requiring
// rules: the first one waiting for answers and the first one that failed,
// as rule index + 1 (0: none), so that a matcher needs no set-up.
type attestMatch struct {
	needs, failed int
	failedCheck   AttestationCheck
}

// attested tells the matcher whether rule i's attestations all pass.
func (m *matcher) attested(i int, r *Rule) bool {
	c := m.attestationCheck(r)
	switch c.Status {
	case AttestationVerified:
		return true
	case AttestationNotChecked:
		if m.att.needs == 0 || i+1 < m.att.needs {
			m.att.needs = i + 1
		}
	default:
		if m.att.failed == 0 || i+1 < m.att.failed {
			m.att.failed, m.att.failedCheck = i+1, c
		}
	}
	return false
}

// attestationCheck judges every type r requires, stopping at the first
// that does not pass.
func (m *matcher) attestationCheck(r *Rule) AttestationCheck {
	c := AttestationCheck{Rule: r, Status: AttestationVerified}
	var a *Attested
	if m.evidence != nil {
		a = m.evidence.Attestations
	}
	var passed []string
	for _, q := range r.Attestations {
		tc := a.check(q, m.now)
		if tc.status != AttestationVerified {
			c.Status, c.Failed, c.Reason = tc.status, q, tc.reason
			return c
		}
		passed = append(passed, tc.reason)
	}
	c.Reason = strings.Join(passed, "; ")
	return c
}

// check evaluates q on its answer, once per decision.
func (a *Attested) check(q *AttestationRequirement, now time.Time) typeCheck {
	if a == nil {
		return typeCheck{reason: "its attestations were not verified"}
	}
	res, ok := a.answer(q.ID)
	if !ok {
		return typeCheck{reason: "its attestations were not verified"}
	}
	if !a.now.Equal(now) {
		a.checks, a.now = a.checks[:0], now
	}
	for _, e := range a.checks {
		if e.q == q {
			return e.tc
		}
	}
	tc := q.judge(res, now)
	a.checks = append(a.checks, evaluated{q, tc})
	return tc
}

// judge decides one type on its answer: the newest verified statement
// decides (Newest), and every statement as new as it must satisfy the
// condition: of two scans made at the same instant, a failing one is not
// outvoted either.
func (q *AttestationRequirement) judge(res AttestationResult, now time.Time) typeCheck {
	switch res.Status {
	case AttestationVerified:
	case AttestationNotChecked:
		return typeCheck{reason: "its attestations were not verified"}
	default:
		return typeCheck{status: res.Status, reason: res.Reason}
	}
	if len(res.Statements) == 0 {
		return typeCheck{status: AttestationMissing, reason: "no verified attestation of type " + q.Type}
	}
	newest := Newest(res.Statements)
	for _, s := range newest {
		if why := q.holds(s, now); why != "" {
			return typeCheck{status: AttestationFailed, reason: why}
		}
	}
	s := newest[0]
	what := "attestation " + q.Type + " " + describeStatement(s)
	if q.Condition != "" {
		what += " satisfies its condition"
	}
	return typeCheck{status: AttestationVerified, reason: what}
}

// holds evaluates the condition on s: "" when it holds, else why not.
func (q *AttestationRequirement) holds(s Statement, now time.Time) string {
	if q.program == nil {
		return ""
	}
	out, _, err := q.program.Eval(&conditionVars{s: &s, now: now})
	if err != nil {
		return q.conditionName() + "could not be evaluated on the newest one " + describeStatement(s) + ": " + err.Error()
	}
	if b, ok := out.Value().(bool); !ok || !b {
		return q.conditionName() + "does not hold on the newest one " + describeStatement(s) + ": " + q.Condition
	}
	return ""
}

// conditionVars are a condition's variables for one statement: what
// cel-go's Activation asks, without building a map for each evaluation.
type conditionVars struct {
	s   *Statement
	now time.Time
}

func (v *conditionVars) ResolveName(name string) (any, bool) {
	switch name {
	case "predicate":
		return v.s.Predicate, true
	case "predicateType":
		return v.s.PredicateType, true
	case "subject":
		return v.s.Subject, true
	case "now":
		return v.now, true
	}
	return nil, false
}

func (v *conditionVars) Parent() interpreter.Activation { return nil }

func (q *AttestationRequirement) conditionName() string {
	return "the condition of attestation " + q.Type + " (" + q.Source.String() + ") "
}

// describeStatement is "(signed by KEY, FORMAT, finished TIME)".
func describeStatement(s Statement) string {
	b := make([]byte, 0, 160)
	b = append(b, '(')
	if s.Key != nil {
		b = append(append(append(b, "signed by "...), s.Key.Path...), ", "...)
	}
	b = append(b, s.Format...)
	if t, how := statementTime(s); !t.IsZero() {
		b = append(append(append(b, ", "...), how...), ' ')
		b = t.UTC().AppendFormat(b, time.RFC3339)
	}
	return string(append(b, ')'))
}

// finishTimes are where the common predicates say when the work they
// describe ended: SLSA provenance v1, SLSA provenance v0.2, and cosign's
// vulnerability scan.
var finishTimes = [][]string{
	{"runDetails", "metadata", "finishedOn"},
	{"metadata", "buildFinishedOn"},
	{"metadata", "scanFinishedOn"},
}

// statementTime is when s was made, for ordering: the verified signing
// time where there is one, else the first RFC 3339 finish time of
// finishTimes the predicate has, else zero (older than any other).
func statementTime(s Statement) (time.Time, string) {
	if !s.Signed.IsZero() {
		return s.Signed, "signed"
	}
	for _, path := range finishTimes {
		v := s.Predicate
		for _, k := range path {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		if str, ok := v.(string); ok {
			if t, err := time.Parse(time.RFC3339Nano, str); err == nil {
				return t, "finished"
			}
		}
	}
	return time.Time{}, ""
}

// Newest returns the statements that decide a type: those made at the
// latest time (statementTime), usually one. Statements with no time at
// all are older than any with one; when none has a time, all decide.
func Newest(all []Statement) []Statement {
	if len(all) < 2 {
		return all
	}
	type timed struct {
		s Statement
		t time.Time
	}
	ts := make([]timed, len(all))
	for i, s := range all {
		ts[i].s = s
		ts[i].t, _ = statementTime(s)
	}
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].t.After(ts[j].t) })
	var out []Statement
	for _, x := range ts {
		if !x.t.Equal(ts[0].t) {
			break
		}
		out = append(out, x.s)
	}
	return out
}

// attestationAllowed completes a decision an attestation-requiring rule
// allowed: the check, and the reason saying what was verified.
func (p *Policy) attestationAllowed(d *Decision, allow *matcher) {
	c := allow.attestationCheck(d.Rule)
	d.Attestation = &c
	d.Reason += ": " + c.Reason
}

// evidenceDenial fills a denial caused by a signature or attestation
// requirement: a rule still waiting for an answer comes first (its answer
// may allow), then the first rule, in policy order, that failed.
func (p *Policy) evidenceDenial(d *Decision, allow *matcher) bool {
	sigFirst := allow.needs >= 0 ||
		allow.att.needs == 0 && allow.unsigned >= 0 && (allow.att.failed == 0 || allow.unsigned < allow.att.failed-1)
	if sigFirst {
		return p.signatureDenial(d, allow)
	}
	i, c := allow.att.needs-1, AttestationCheck{}
	if i >= 0 {
		c = allow.attestationCheck(p.Allow[i])
	} else if i, c = allow.att.failed-1, allow.att.failedCheck; i < 0 {
		return false
	}
	r := p.Allow[i]
	d.Rule, d.Attestation = r, &c
	if r.SignedBy != nil {
		res := allow.evidenceFor(r.SignedBy)
		d.Signature = &SignatureCheck{Rule: r, Keys: r.SignedBy, Result: res}
	}
	d.Reason = r.matchReason() + ", but " + c.Reason
	return true
}

// RequiresAttestations reports whether any rule asks for attestations.
func (p *Policy) RequiresAttestations() bool {
	for _, r := range p.Allow {
		if r.Attestations != nil {
			return true
		}
	}
	return false
}
