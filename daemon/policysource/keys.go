package policysource

import (
	"errors"
	"fmt"

	"github.com/pullguard/pullguard/policy"
)

// loadKeys reads the --policy-source-key files under the rule policy key
// files follow (root's, not writable by others), since whoever can replace
// this key chooses the policy.
func loadKeys(paths []string) (*policy.KeySet, error) {
	if len(paths) == 0 {
		return nil, errors.New("--policy-source needs --policy-source-key: an artifact is only trusted with a signature by a known key")
	}
	ks, err := policy.LoadKeySet(paths)
	if err != nil {
		return nil, fmt.Errorf("--policy-source-key: %w", err)
	}
	return ks, nil
}
