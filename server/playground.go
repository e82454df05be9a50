package server

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
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

// loadPlayground reads the embedded files once.
func loadPlayground() map[string]asset {
	files := map[string]asset{}
	err := fs.WalkDir(playgroundFS, "playground", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := playgroundFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		files[path.Base(p)] = asset{body: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("server: the embedded playground cannot be read: " + err.Error()) // a broken build, not input
	}
	return files
}

// ServePlayground serves the playground: GET / is its page and
// GET /playground/NAME its files. Unknown paths stay 404 error objects,
// and the page needs no API key (it is not under /v1/; the API calls it
// makes carry the key). Call it before the server takes requests.
func (s *Server) ServePlayground() {
	files := loadPlayground()
	serve := func(w http.ResponseWriter, r *http.Request, name string) {
		a, ok := files[name]
		if !ok {
			writeError(w, api.NewError(http.StatusNotFound, api.TypeInvalidRequest, api.CodeNotFound, "",
				"Unknown request URL: %s %s. The playground's files are index.html, app.js and style.css.", r.Method, r.URL.Path))
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
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { serve(w, r, "index.html") })
	s.mux.HandleFunc("GET /playground/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if name == "index.html" {
			name = "" // the page is at /
		}
		serve(w, r, name)
	})
}
