// Package floorplugin is the least a Docker authorization plugin can do:
// allow every request without reading it. The authorization benchmark
// measures pullguard's plugin against it.
package floorplugin

import "net/http"

const contentType = "application/vnd.docker.plugins.v1+json"

// Handler answers Plugin.Activate and allows every AuthZReq and AuthZRes.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Write([]byte(`{"Implements":["authz"]}`))
	})
	allow := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Write([]byte(`{"Allow":true}`))
	}
	mux.HandleFunc("/AuthZPlugin.AuthZReq", allow)
	mux.HandleFunc("/AuthZPlugin.AuthZRes", allow)
	return mux
}
