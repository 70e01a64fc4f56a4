package server

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// playgroundCSP keeps the page to its own files: nothing is fetched from
// elsewhere (previews are data: URLs).
const playgroundCSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"

// playgroundRoutes serve the page at "/" and its files under /static/.
func (s *Server) playgroundRoutes() {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed pattern guarantees the folder
	}
	fileServer := http.StripPrefix("/static/", http.FileServerFS(files))
	s.mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", playgroundCSP)
		fileServer.ServeHTTP(w, r)
	})
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", playgroundCSP)
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, files, "index.html")
	})
}
