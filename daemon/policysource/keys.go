package policysource

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/pullguard/pullguard/policy"
)

// loadKeys reads the --policy-source-key files as a signed-by key set,
// with the policy loader itself: the same key formats (what cosign
// accepts) and the same rule for key files (root's, not writable by
// others), since whoever can replace this key chooses the policy. The
// loader reads keys only as a rule's signed-by, so it is handed a one-rule
// policy naming them.
func loadKeys(paths []string) (*policy.KeySet, error) {
	if len(paths) == 0 {
		return nil, errors.New("--policy-source needs --policy-source-key: an artifact is only trusted with a signature by a known key")
	}
	var b strings.Builder
	b.WriteString("allow:\n  - image: policy-source.invalid/key\n    signed-by:\n")
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "      - key: %q\n", abs)
	}
	p, err := policy.Parse(policy.Source{Name: "--policy-source-key", Data: []byte(b.String())})
	if err != nil {
		var le *policy.LoadError
		if errors.As(err, &le) {
			msgs := make([]string, len(le.Problems))
			for i, pr := range le.Problems {
				msgs[i] = strings.TrimPrefix(pr.Msg, "signed-by: ")
			}
			return nil, fmt.Errorf("--policy-source-key: %s", strings.Join(msgs, "; "))
		}
		return nil, fmt.Errorf("--policy-source-key: %w", err)
	}
	return p.Allow[0].SignedBy, nil
}
