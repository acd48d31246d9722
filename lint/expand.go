package lint

import (
	"fmt"
	"math"
	"regexp"

	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// Limits on what ARG expansion may produce. An image reference is at most
// a few hundred bytes; these leave room for any real one, and stop a
// Dockerfile of ARGs that each double the one before (26 lines make 2^24
// copies of the first) while it holds a few KiB.
const (
	// maxExpansion bounds one expansion: what it reads from ARG values,
	// and what it yields.
	maxExpansion = 4 << 10
	// maxExpansionTotal bounds the same for all of a Dockerfile's
	// expansions together, so that many lines under the first bound cannot
	// add up to more.
	maxExpansionTotal = 1 << 20
	// maxTransient bounds what BuildKit's lexer may build inside one
	// expansion before its result can be measured (see readBudget).
	maxTransient = 4 << 20
)

// patternSubstitution finds ${NAME/pattern/replacement} (and //): BuildKit
// names are letters, digits and _ (or none), or one special parameter
// character. Anything else that looks like one (an escaped $) is counted
// too, which only lowers the budget.
var patternSubstitution = regexp.MustCompile(`\$\{(?:[\pL\pN_]*|[@*#?$!-])/`)

// expansionBudget meters what one Dockerfile's expansions read from ARG
// values. BuildKit's lexer takes values through Get and cannot be stopped
// from outside; a value beyond the budget is handed over as empty, and the
// expansion that asked for it is refused whatever it made of the blank.
type expansionBudget struct {
	readLeft  int  // what the current expansion may still read
	totalLeft int  // what the Dockerfile's expansions may still read and yield
	overflow  bool // the current expansion asked for more than readLeft
}

// read returns v if the budget has room for it, and "" otherwise.
func (b *expansionBudget) read(v string) string {
	if len(v) > b.readLeft {
		b.overflow = true
		return ""
	}
	b.readLeft -= len(v)
	return v
}

// process expands word with the global arguments within the limits. A
// refused expansion returns why, to follow "the reference" or "ARG X".
func (g *globalArgs) process(word string) (r shell.ProcessWordResult, refused string, err error) {
	budget, ok := readBudget(word)
	if !ok {
		return r, fmt.Sprintf("holds too many ${NAME/pattern/replacement} for its %d bytes: expanding it could build more than %d bytes", len(word), maxTransient), nil
	}
	total := budget >= g.totalLeft
	budget = min(budget, g.totalLeft)
	g.readLeft, g.overflow = budget, false
	r, err = g.lex.ProcessWordWithMatches(word, g)
	if err != nil {
		return r, "", err
	}
	left := g.totalLeft - (budget - g.readLeft)
	g.totalLeft = max(left-len(r.Result), 0)
	switch {
	case g.overflow && !total, len(r.Result) > maxExpansion:
		return r, fmt.Sprintf("expands to more than %d bytes, which no image reference needs", maxExpansion), nil
	case g.overflow, len(r.Result) > left:
		return r, fmt.Sprintf("is past the %d bytes lint expands in one Dockerfile", maxExpansionTotal), nil
	}
	return r, "", nil
}

// readBudget is how much an expansion of word may read from ARG values.
// Only ${NAME/pattern/replacement} makes the lexer build more than it
// reads and the word holds: each one may repeat its replacement once for
// every character of its value. With s of them in a word of n bytes that
// reads at most b, the lexer builds no more than (n+b)^(s+1) bytes, so b
// shrinks as s grows and a word that nests too many is not expanded.
func readBudget(word string) (int, bool) {
	s := len(patternSubstitution.FindAllStringIndex(word, -1))
	if s == 0 {
		return maxExpansion, true
	}
	limit := int(math.Pow(maxTransient, 1/float64(s+1)))
	if len(word) >= limit {
		return 0, false
	}
	return min(maxExpansion, limit-len(word)), true
}
