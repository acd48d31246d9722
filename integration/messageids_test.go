package integration

// MESSAGE_IDs the tests filter on. They are copied on purpose, not imported from daemon/ and
// enforcer/: SREs' filters depend on these exact values, so a change there must fail here.
const (
	msgActionTaken   = "7c8e982039f1450dbce9a0e2f612b68a"
	msgWouldAct      = "668fa933e1a941c29710f7a5d45f3c82"
	msgBlocked       = "3200d7a028b349449e396b19d51742a6"
	msgPolicyLoaded  = "f502ef608d7c4b22b87f111f60c2546d"
	msgPolicyInvalid = "cc9e6ea108b94998b2762bd6a27b5152"
	msgStarted       = "86b70b17b49b40deaa40068acfd22c57"
	msgStopping      = "e16248c5ec4c41288948d42b2ba3fcf6"

	msgRuntimeConnected    = "c79fbfa9afc24b5f8b0d3ba6bd2301f3"
	msgRuntimeDisconnected = "82e3253dbd0844049a88d072592d7394"
)
