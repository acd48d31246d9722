package policy

import "time"

// ContentMatters reports whether the content a name stands for can change
// the decision on it, so that a guard removing the name must first check
// that it still stands for the content judged (a pull may have moved it
// since): an allow rule pins digests (other content may be allowed under
// the name), a signed-by or attestations rule matches the name (other
// content may be signed or attested), or the name is allowed on its own and goes only for its content
// (a deny rule listing its digest, local-images: deny). Otherwise the name
// is denied whatever it stands for; DeniedWhateverContent adds what Docker
// takes along with a removal.
func (p *Policy) ContentMatters(name string, now time.Time) bool {
	d := p.Decide(name, now)
	return p.pinsDigests || d.Allowed || d.Signature != nil || d.Attestation != nil
}
