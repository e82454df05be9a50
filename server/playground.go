package server

import (
	"bytes"
	"embed"
	"net/http"
	"time"

	"github.com/stepflash/stepflash/api"
)

// The playground is a chat page served at / (docs/playground.md): plain
// HTML, CSS and JavaScript embedded in the binary, which talk to the public
// API only (/v1/models and /v1/chat/completions), with the key the user
// types, like any other client.
//
//go:embed playground
var playgroundFS embed.FS

// playgroundCSP allows the page its own scripts, styles and API, images it
// was given as data: or blob: URLs, and nothing else: no inline script, no
// other origin, no framing.
const playgroundCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// ServePlayground serves the playground: GET / is its page and
// GET /playground/NAME its files. Unknown paths stay 404 error objects,
// and the page needs no API key (it is not under /v1/; the API calls it
// makes carry the key). Call it before the server takes requests.
func (s *Server) ServePlayground() {
	s.servePage("/", "playground", loadAssets(playgroundFS, "playground"),
		"The playground's files are index.html, app.js and style.css.")
}

// servePage serves an embedded page: GET page is its index.html and GET
// /dir/NAME its files, under the pages' CSP, revalidated by ETag; an
// unknown file is a 404 error object saying which there are (hint).
func (s *Server) servePage(page, dir string, files map[string]asset, hint string) {
	serve := func(w http.ResponseWriter, r *http.Request, name string) {
		a, ok := files[name]
		if !ok {
			writeError(w, api.NewError(http.StatusNotFound, api.TypeInvalidRequest, api.CodeNotFound, "",
				"Unknown request URL: %s %s. %s", r.Method, r.URL.Path, hint))
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("Content-Security-Policy", playgroundCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache") // revalidated by ETag: a new binary's files are seen at once
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	}
	pattern := "GET " + page
	if page == "/" {
		pattern = "GET /{$}"
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { serve(w, r, "index.html") })
	s.mux.HandleFunc("GET /"+dir+"/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if name == "index.html" {
			name = "" // the page is at its own path
		}
		serve(w, r, name)
	})
}
