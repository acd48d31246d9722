package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"go.yaml.in/yaml/v3"
)

// Loading a rule's attestations: list. Conditions are compiled and
// type-checked here, so that one that could never run is a load error at
// its line and column, not a denial at the first image.

// attestationKeys are the keys of one attestations: item.
var attestationKeys = []string{"type", "signed-by", "condition"}

// conditionCostLimit bounds one evaluation of a condition (CEL's cost
// units, about one per value visited): a condition over a large scan
// report is cheap, one that would walk it quadratically is stopped and
// denies, saying so.
const conditionCostLimit = 1_000_000

// conditionEnv is the CEL environment conditions are written in: the
// statement's predicate (JSON: maps, lists, numbers as double), its
// predicateType and subject, and the judging time now.
var conditionEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("predicate", cel.DynType),
		cel.Variable("predicateType", cel.StringType),
		cel.Variable("subject", cel.ListType(cel.DynType)),
		cel.Variable("now", cel.TimestampType),
		// JSON numbers are doubles: critical == 0 and count < 5 compare them
		// with the integers a condition is written with.
		cel.CrossTypeNumericComparisons(true),
	)
})

func (l *loader) attestations(v *yaml.Node, kind RuleKind) []*AttestationRequirement {
	if kind != Allow {
		l.errorf(v, "attestations: only allow rules can require attestations")
		return nil
	}
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		got := describe(v)
		if v.Kind == yaml.SequenceNode {
			got = "an empty list"
		}
		l.errorf(v, "attestations: expected a list of {type: URI, signed-by: [...], condition: CEL}, got %s", got)
		return nil
	}
	var out []*AttestationRequirement
	types := map[string]int{}
	ok := true
	for _, item := range v.Content {
		q, valid := l.attestation(item)
		if q == nil {
			ok = false
			continue
		}
		if line, dup := types[q.Type]; dup {
			l.errorf(item, "attestations: type %s is listed twice (first at line %d); write one condition with &&", q.Type, line)
			valid = false
		} else if q.Type != "" {
			types[q.Type] = item.Line
		}
		ok = ok && valid
		out = append(out, q)
	}
	if !ok {
		return nil
	}
	return out
}

// attestation reads one item; ok is false when it has problems (each
// reported), and the item is nil when it is not even a mapping.
func (l *loader) attestation(n *yaml.Node) (q *AttestationRequirement, ok bool) {
	if n.Kind != yaml.MappingNode {
		l.errorf(n, "attestations: expected {type: URI, signed-by: [...], condition: CEL}, got %s", describe(n))
		return nil, false
	}
	before := len(l.problems)
	q = &AttestationRequirement{Source: Position{File: l.fileName, Line: n.Line, Column: n.Column}}
	var hasType, hasSigners bool
	var cond *yaml.Node
	l.mapping(n, attestationKeys, func(key string, _, v *yaml.Node) {
		switch key {
		case "type":
			hasType = true
			if s, ok := l.str(v, "type"); ok {
				if err := checkPredicateType(s); err != nil {
					l.errorf(v, "attestations: type: %v", err)
				}
				q.Type = s
			}
		case "signed-by":
			hasSigners = true
			q.SignedBy = l.signedBy(v, Allow) // signed-by as a rule writes it
			if q.SignedBy != nil && len(q.SignedBy.Identities) > 0 {
				// Statements are verified by key (enforcer/signature):
				// a keyless signer here would deny every image, silently.
				l.errorf(v, "attestations: signed-by: keyless signers (issuer, subject) do not verify attestations yet; list the attester's key")
			}
		case "condition":
			if s, ok := l.str(v, "condition"); ok {
				q.Condition, cond = s, v
			}
		}
	})
	if !hasType {
		l.errorf(n, "attestations: type: is required (the predicate type, e.g. https://slsa.dev/provenance/v1)")
	}
	if !hasSigners {
		l.errorf(n, "attestations: signed-by: is required: an attestation anyone could have made proves nothing")
	}
	if cond != nil {
		q.program, q.readsNow = l.condition(cond, q.Condition)
	}
	if len(l.problems) > before || q.SignedBy == nil {
		return q, false
	}
	sum := sha256.Sum256([]byte(q.Type + "\x00" + q.SignedBy.ID))
	q.ID = hex.EncodeToString(sum[:])
	return q, true
}

// checkPredicateType accepts what in-toto calls a predicate type: a URI.
func checkPredicateType(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || strings.ContainsAny(s, " \t\n") {
		return fmt.Errorf("%q is not a predicate type URI (like https://slsa.dev/provenance/v1)", s)
	}
	return nil
}

// condition compiles and type-checks one condition. A problem is reported
// at its place in the file where the expression is written on one line,
// else at the condition with the place in the expression.
func (l *loader) condition(v *yaml.Node, expr string) (cel.Program, bool) {
	if strings.TrimSpace(expr) == "" {
		l.errorf(v, "attestations: condition: expected a CEL expression, got an empty string")
		return nil, false
	}
	env, err := conditionEnv()
	if err != nil {
		l.errorf(v, "attestations: condition: %v", err)
		return nil, false
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		for _, e := range iss.Errors() {
			l.conditionError(v, expr, e.Location.Line(), e.Location.Column(), e.Message)
		}
		return nil, false
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		l.errorf(v, "attestations: condition: is of type %s; a condition must be a bool (true allows)", ast.OutputType())
		return nil, false
	}
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	// Tracking the cost of an evaluation costs as much as the evaluation:
	// it is done only where the cost could reach the limit (a comprehension
	// over a list of unknown length), not where its bound is known below it.
	if est, err := env.EstimateCost(ast, unknownSizes{}); err != nil || est.Max > conditionCostLimit {
		opts = append(opts, cel.CostLimit(conditionCostLimit))
	}
	prg, err := env.Program(ast, opts...)
	if err != nil {
		l.errorf(v, "attestations: condition: %v", err)
		return nil, false
	}
	readsNow := false
	for _, ref := range ast.NativeRep().ReferenceMap() {
		readsNow = readsNow || ref.Name == "now"
	}
	return prg, readsNow
}

// conditionError reports a CEL problem at line (1-based) and col (0-based)
// of the expression.
func (l *loader) conditionError(v *yaml.Node, expr string, line, col int, msg string) {
	node := *v
	oneLine := !strings.Contains(expr, "\n") && line == 1
	switch {
	case oneLine && v.Style == 0:
		node.Column += col
	case oneLine && v.Style == yaml.SingleQuotedStyle && !strings.Contains(expr, "'"),
		oneLine && v.Style == yaml.DoubleQuotedStyle && !strings.ContainsAny(expr, `"\`):
		node.Column += col + 1 // after the opening quote, where no escape moved it
	default:
		msg = fmt.Sprintf("%s (line %d, column %d of the expression)", msg, line, col+1)
	}
	l.errorf(&node, "attestations: condition: %s", msg)
}

// unknownSizes is a cost estimator that knows nothing of the predicate:
// the estimate is then bounded only where the expression is, whatever the
// statement holds.
type unknownSizes struct{}

func (unknownSizes) EstimateSize(checker.AstNode) *checker.SizeEstimate { return nil }

func (unknownSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}
