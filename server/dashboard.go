package server

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"path"
)

// The usage dashboard is a page served at /dashboard (docs/dashboard.md):
// plain HTML, CSS and JavaScript embedded in the binary, charts drawn as
// SVG by its own charts.js, talking only to GET /v1/usage with the
// operator key the user types.
//
//go:embed dashboard
var dashboardFS embed.FS

// loadAssets reads the embedded files of dir once.
func loadAssets(fsys embed.FS, dir string) map[string]asset {
	files := map[string]asset{}
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fsys.ReadFile(p)
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
		panic("server: the embedded " + dir + " cannot be read: " + err.Error()) // a broken build, not input
	}
	return files
}

// ServeDashboard serves the usage dashboard: GET /dashboard is its page
// and GET /dashboard/NAME its files, under the playground's CSP. The page
// needs no key (it is not under /v1/); its calls to /v1/usage carry the
// operator key. Pair it with ServeUsage. Call it before the server takes
// requests.
func (s *Server) ServeDashboard() {
	s.servePage("/dashboard", "dashboard", loadAssets(dashboardFS, "dashboard"),
		"The dashboard is at /dashboard; its files are app.js, charts.js, style.css and icon.svg.")
}
