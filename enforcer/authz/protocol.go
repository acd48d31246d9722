package authz

import (
	"bytes"
	"encoding/json"
)

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

// requestLine reads RequestMethod and RequestUri from the start of a
// plugin call, without decoding the rest: dockerd writes them before the
// request's headers and body, and an AuthZRes call carries the whole
// response body after them. ok is false when either is missing or the
// call is not a JSON object; the caller then decodes it whole.
//
// Keys match without regard to case, as encoding/json matches them for
// dockerd's structs. dockerd's encoder writes each key once; the first
// occurrence is taken.
func requestLine(b []byte) (method, uri string, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return "", "", false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		if i >= len(b) || b[i] != '"' {
			return "", "", false
		}
		end, ok := stringEnd(b, i)
		if !ok {
			return "", "", false
		}
		key := b[i+1 : end-1]
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return "", "", false
		}
		i = skipSpace(b, i+1)
		var dst *string
		switch {
		case asciiEqualFold(key, "RequestMethod"):
			dst = &method
		case asciiEqualFold(key, "RequestUri"):
			dst = &uri
		}
		if dst == nil {
			if i, ok = skipValue(b, i); !ok {
				return "", "", false
			}
			continue
		}
		if i >= len(b) || b[i] != '"' {
			return "", "", false
		}
		if end, ok = stringEnd(b, i); !ok {
			return "", "", false
		}
		if *dst, ok = jsonString(b[i:end]); !ok {
			return "", "", false
		}
		i = end
		if method != "" && uri != "" {
			return method, uri, true
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string starting at b[i].
func stringEnd(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// jsonString decodes the JSON string s (quotes included); one without
// escapes is taken as it is.
func jsonString(s []byte) (string, bool) {
	if !bytes.ContainsRune(s, '\\') {
		return string(s[1 : len(s)-1]), true
	}
	var v string
	if json.Unmarshal(s, &v) != nil {
		return "", false
	}
	return v, true
}

// skipValue returns the index just past the JSON value starting at b[i]:
// a string, or anything up to the comma or brace that ends it at its own
// depth.
func skipValue(b []byte, i int) (int, bool) {
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			end, ok := stringEnd(b, i)
			if !ok {
				return 0, false
			}
			i = end
			if depth == 0 {
				return i, true
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i, true
			}
			depth--
			if depth == 0 {
				return i + 1, true
			}
		case ',':
			if depth == 0 {
				return i, true
			}
		}
		i++
	}
	return 0, false
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c, d := b[i], s[i]
		if c|0x20 != d|0x20 || (c|0x20) < 'a' || (c|0x20) > 'z' {
			return false
		}
	}
	return true
}
