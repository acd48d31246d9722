package authz

// This file words refusals for the Docker user: the policy's own words,
// plus what a user needs to find the rule or the image.

import (
	"fmt"
	"strings"

	"github.com/pullguard/pullguard/policy"
)

// invalid is the denial of a reference that does not parse, worded as the
// policy words it.
func invalid(input string, err error) policy.Decision {
	return policy.Decision{Input: input, Reason: "invalid reference: " + err.Error()}
}

// deniedText is the denial in the policy's words, plus where the default
// was set when no rule decided, so the user knows where to look.
func deniedText(p *policy.Policy, d policy.Decision) string {
	if d.Rule != nil || d.Reference == "" || d.ForWantOfProvenance() {
		return d.Err().Error()
	}
	plain := d
	plain.Resembles = ""
	msg := plain.Err().Error() + " (" + defaultSource(p) + ")"
	if d.Resembles != "" {
		msg += "; it resembles the allowed " + d.Resembles
	}
	return msg
}

func defaultSource(p *policy.Policy) string {
	src := p.DefaultSource.String()
	if src == "" && len(p.Files) > 0 {
		src = p.Files[0]
	}
	if src == "" {
		return "default: " + string(p.Default)
	}
	return "default: " + string(p.Default) + ", " + src
}

// describeImage names a resolved image for a message: by its short ID when
// that is what the user typed, else as "typed (image <short ID>)".
func describeImage(typed, id string) string {
	short := shortID(id)
	if t := strings.TrimPrefix(typed, "sha256:"); strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), t) {
		return "image " + short
	}
	return typed + " (image " + short + ")"
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// tagRefusal words the refusal of a tag request.
func tagRefusal(source, target, why string) string {
	return "cannot tag " + source + " as " + target + ": " + why
}

// reasonNameless is why an image known only by its ID is refused.
const reasonNameless = "the image has no name, only an ID, so where it came from cannot be judged"

// sameNameRefusal words the refusal of an image named as the user typed
// it, with how many other names it has that are not allowed either.
func sameNameRefusal(p *policy.Policy, d policy.Decision, others int) string {
	msg := deniedText(p, d)
	if others > 0 {
		msg += fmt.Sprintf("; none of the image's other %d names is allowed either", others)
	}
	return msg
}

// noAllowedNameRefusal words the refusal of an image the user named by ID,
// digest or another name than its own.
func noAllowedNameRefusal(p *policy.Policy, typed, id string, d policy.Decision) string {
	return fmt.Sprintf("%s has no allowed name: %s", describeImage(typed, id), deniedText(p, d))
}

// namelessRefusal words the refusal of an image without names.
func namelessRefusal(typed, id string) string {
	return fmt.Sprintf("%s is not allowed: %s", describeImage(typed, id), reasonNameless)
}
