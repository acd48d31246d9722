package daemon

import "github.com/pullguard/pullguard/enforcer"

// MESSAGE_IDs of pullguard's journal entries. Each is a fixed random 128-bit
// ID (generated once, never to be changed: SREs' filters and the journald
// catalog depend on them). Filter with e.g.
//
//	journalctl MESSAGE_ID=7c8e982039f1450dbce9a0e2f612b68a
const (
	// MessageIDActionTaken: pullguard removed or untagged an image, or
	// stopped and removed a container, because the policy does not allow
	// its image (PULLGUARD_ACTION=removed|untagged|stopped).
	MessageIDActionTaken = "7c8e982039f1450dbce9a0e2f612b68a"

	// MessageIDWouldAct: in audit mode, what enforce mode would have done
	// (PULLGUARD_ACTION=would-remove|would-stop|would-block). Nothing was
	// changed.
	MessageIDWouldAct = "668fa933e1a941c29710f7a5d45f3c82"

	// MessageIDBlocked: a request (pull, create, ...) was refused before it
	// took effect, by the Docker authorization plugin
	// (PULLGUARD_ACTION=blocked).
	MessageIDBlocked = "3200d7a028b349449e396b19d51742a6"

	// MessageIDActionFailed: pullguard tried to act on a disallowed image
	// or container and could not (PULLGUARD_ACTION=failed,
	// PULLGUARD_ERROR says why). The disallowed object may still be there.
	MessageIDActionFailed = "a322051a2a04469db5096b8fb8b9f7da"

	// MessageIDRunningReported: a container runs a disallowed image and was
	// left running because the policy says running: keep
	// (PULLGUARD_ACTION=reported).
	MessageIDRunningReported = "60bc69fcc26d4c8a88dae059b0fe482f"

	// MessageIDHeld: removals and stops of what the previous policy
	// allowed wait until a reloaded policy has settled.
	MessageIDHeld = "064497a00fd34a6ab52a66b106f1c4b9"

	// MessageIDPolicyLoaded: a policy was loaded and is now in force, at
	// start-up or after a change (PULLGUARD_POLICY_HASH, PULLGUARD_MODE,
	// PULLGUARD_ALLOW_RULES, PULLGUARD_DENY_RULES, PULLGUARD_POLICY_FILES).
	MessageIDPolicyLoaded = "f502ef608d7c4b22b87f111f60c2546d"

	// MessageIDPolicyInvalid: a changed policy was rejected; the previous
	// policy stays in force. MESSAGE lists each problem as file:line:col.
	MessageIDPolicyInvalid = "cc9e6ea108b94998b2762bd6a27b5152"

	// MessageIDPolicySourceFailed: the policy source (--policy-source)
	// could not be checked, or its artifact was refused (unsigned, signed
	// by another key, malformed); the policy in force stays
	// (PULLGUARD_POLICY_SOURCE, PULLGUARD_POLICY_DIGEST,
	// PULLGUARD_REFUSED_DIGEST, PULLGUARD_ERROR).
	MessageIDPolicySourceFailed = "0b1ae89c6ee3434d98f2db1b9ac9eca8"

	// MessageIDRuntimeConnected: pullguard connected (or reconnected) to a
	// container runtime and is watching its events (PULLGUARD_RUNTIME).
	MessageIDRuntimeConnected = enforcer.MessageIDRuntimeConnected

	// MessageIDRuntimeDisconnected: the connection to a runtime was lost;
	// pullguard is reconnecting and will reconcile what it missed.
	MessageIDRuntimeDisconnected = enforcer.MessageIDRuntimeDisconnected

	// MessageIDStarted: the daemon started and is enforcing (or auditing).
	MessageIDStarted = "86b70b17b49b40deaa40068acfd22c57"

	// MessageIDStopping: the daemon is shutting down; images pulled from
	// now on are not checked until it runs again.
	MessageIDStopping = "e16248c5ec4c41288948d42b2ba3fcf6"

	// MessageIDReportsDropped: enforcement entries were lost because the
	// log could not keep up (PULLGUARD_DROPPED says how many). The actions
	// themselves were taken.
	MessageIDReportsDropped = "2dfbc3d98dbd4bb7bb9387661c8f1e92"
)

// MessageIDInfo describes one MESSAGE_ID, for the journald catalog and docs.
type MessageIDInfo struct {
	// ID is the 32 lowercase hex digits journald shows.
	ID string
	// Name is the Go constant's name without the MessageID prefix.
	Name string
	// Summary is a one-line subject for the catalog entry.
	Summary string
	// Description is the catalog entry's body: what happened and what to do.
	Description string
}

// MessageIDs lists every MESSAGE_ID pullguard writes, in a fixed order.
func MessageIDs() []MessageIDInfo {
	return []MessageIDInfo{
		{MessageIDActionTaken, "ActionTaken", "pullguard removed a disallowed image or container",
			"pullguard removed or untagged an image, or stopped and removed a container, because its image reference is not allowed by the policy. PULLGUARD_IMAGE, PULLGUARD_REASON and PULLGUARD_RULE say what and why. To allow the image, add an allow rule to the policy."},
		{MessageIDWouldAct, "WouldAct", "pullguard (audit mode) would have acted on a disallowed image",
			"The policy is in audit mode: nothing was changed. In enforce mode pullguard would have done what PULLGUARD_ACTION says to PULLGUARD_IMAGE. Review these entries before switching the policy to mode: enforce."},
		{MessageIDBlocked, "Blocked", "pullguard blocked a request for a disallowed image",
			"A Docker request (pull, create, ...) for an image the policy does not allow was refused by pullguard's authorization plugin before it took effect."},
		{MessageIDActionFailed, "ActionFailed", "pullguard could not act on a disallowed image",
			"pullguard tried to remove or stop something the policy does not allow and failed; PULLGUARD_ERROR says why. The disallowed image or container may still be present: check it by hand. With PULLGUARD_SIGNATURE=unverifiable the registry could not be asked about a required signature: nothing is removed until it answers, and it is asked again at every resync."},
		{MessageIDRunningReported, "RunningReported", "a container is running a disallowed image",
			"A running container uses an image the policy does not allow. It was left running because the policy says running: keep. Stop it by hand, or set running: stop."},
		{MessageIDHeld, "Held", "pullguard holds removals until a reloaded policy settles",
			"The policy was just reloaded, and it would remove or stop things the previous policy allowed. Those steps wait until the policy files have been unchanged for the settle period (--settle-period, 2 s by default), then are decided again under whatever policy is in force then: a policy written in several steps must not destroy on its first half. New arrivals the previous policy did not allow are acted on at once."},
		{MessageIDPolicyLoaded, "PolicyLoaded", "pullguard policy loaded",
			"A policy was loaded and is now in force. PULLGUARD_POLICY_HASH identifies its content; PULLGUARD_MODE, PULLGUARD_ALLOW_RULES and PULLGUARD_DENY_RULES summarize it."},
		{MessageIDPolicyInvalid, "PolicyInvalid", "pullguard rejected an invalid policy",
			"A changed policy file could not be used; the previous policy stays in force. The message lists every problem as file:line:col. Fix the file (pullguard policy validate checks it) and pullguard picks it up."},
		{MessageIDPolicySourceFailed, "PolicySourceFailed", "pullguard could not update the policy from its source",
			"The policy comes from a signed artifact (--policy-source), and the last check of it failed: the registry could not be reached, the artifact is gone, or a new artifact was refused (no signature by the --policy-source-key key, or not a valid policy artifact). PULLGUARD_ERROR says which. The policy in force (PULLGUARD_POLICY_DIGEST) stays, also across restarts: it is kept in the state directory. pullguard checks again at every poll (--policy-source-interval)."},
		{MessageIDRuntimeConnected, "RuntimeConnected", "pullguard connected to a container runtime",
			"pullguard is connected to the runtime named in PULLGUARD_RUNTIME and watches its events."},
		{MessageIDRuntimeDisconnected, "RuntimeDisconnected", "pullguard lost its connection to a container runtime",
			"The connection to the runtime named in PULLGUARD_RUNTIME was lost. pullguard keeps reconnecting and reconciles everything it may have missed once it is back."},
		{MessageIDStarted, "Started", "pullguard started",
			"The pullguard daemon started and watches the configured runtimes."},
		{MessageIDStopping, "Stopping", "pullguard is stopping",
			"The pullguard daemon is shutting down. Images pulled while it is not running are checked when it starts again."},
		{MessageIDReportsDropped, "ReportsDropped", "pullguard dropped log entries",
			"Enforcement entries were lost because the journal could not keep up; PULLGUARD_DROPPED says how many. The actions were still taken."},
	}
}
