package authz

// The wire types of Docker's authorization plugin protocol. They mirror
// moby's pkg/authorization (api.go) field for field, JSON names included;
// they are written out here because the helper module
// (github.com/docker/go-plugins-helpers) is unmaintained and pulling moby's
// daemon module in for three structs is not worth it.

// The plugin protocol's endpoints, all POST with a JSON body.
const (
	pathActivate = "/Plugin.Activate"
	pathAuthZReq = "/AuthZPlugin.AuthZReq"
	pathAuthZRes = "/AuthZPlugin.AuthZRes"
)

// contentType is what Docker's plugin client accepts from a plugin.
const contentType = "application/vnd.docker.plugins.v1.2+json"

// implementsAuthZ is the interface name a plugin announces on activation.
const implementsAuthZ = "authz"

// activateResponse answers POST /Plugin.Activate.
type activateResponse struct {
	Implements []string
}

// Request is what dockerd sends for every API request it serves: to
// AuthZPlugin.AuthZReq before it acts and to AuthZPlugin.AuthZRes after.
type Request struct {
	// User and UserAuthNMethod are set only when dockerd authenticates
	// clients (TLS client certificates).
	User            string `json:"User,omitempty"`
	UserAuthNMethod string `json:"UserAuthNMethod,omitempty"`
	// RequestMethod and RequestURI are the HTTP method and the raw request
	// target, query string included, as the client sent them.
	RequestMethod string `json:"RequestMethod,omitempty"`
	RequestURI    string `json:"RequestUri,omitempty"`
	// RequestBody is base64 in JSON. dockerd forwards a body only when its
	// Content-Type is application/json and it is under 1 MiB; for anything
	// else it is empty even though the daemon will read one.
	RequestBody []byte `json:"RequestBody,omitempty"`
	// RequestHeaders holds one value per header (the last one sent), without
	// Authorization, X-Registry-Auth and X-Registry-Config.
	RequestHeaders map[string]string `json:"RequestHeaders,omitempty"`
	// RequestPeerCertificates are the client's TLS certificates, each a PEM
	// block (base64 in JSON). pullguard does not use them.
	RequestPeerCertificates [][]byte `json:"RequestPeerCertificates,omitempty"`
	// The response fields are set only in AuthZRes calls.
	ResponseStatusCode int               `json:"ResponseStatusCode,omitempty"`
	ResponseBody       []byte            `json:"ResponseBody,omitempty"`
	ResponseHeaders    map[string]string `json:"ResponseHeaders,omitempty"`
}

// Response is the plugin's verdict. When Allow is false dockerd fails the
// API request with "authorization denied by plugin NAME: Msg".
type Response struct {
	Allow bool   `json:"Allow"`
	Msg   string `json:"Msg,omitempty"`
	Err   string `json:"Err,omitempty"`
}
