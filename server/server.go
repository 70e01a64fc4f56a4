// Package server is sdxl-run's HTTP server: AUTOMATIC1111's /sdapi/v1 API
// (the one Open WebUI, SillyTavern and KoboldCpp-style clients speak), the
// OpenAI images API, a native asynchronous job API with Server-Sent Events
// progress and latent previews, and the playground page at "/" (embedded:
// plain HTML, CSS and JavaScript, nothing fetched from elsewhere).
//
// The server holds no model: it talks to a jobs.Service (in-process
// workers, or a queue of remote workers) and describes the models from
// Config.Models. Every request body is bounded; requests need the API key
// when one is set (Authorization: Bearer KEY, Basic with KEY as the
// password, or the playground's cookie); CORS is off unless an origin is
// allowed.
//
//	GET  /                                the playground
//	POST /sdapi/v1/txt2img, img2img       A1111 generation (synchronous)
//	GET  /sdapi/v1/progress               the running job, with a preview
//	POST /sdapi/v1/interrupt, skip
//	GET  /sdapi/v1/samplers, schedulers, sd-models, loras, options
//	POST /sdapi/v1/options, png-info
//	POST /v1/images/generations           OpenAI images API
//	POST /v1/jobs                         queue a job (jobspec JSON) → 202
//	GET  /v1/jobs, /v1/jobs/{id}          job states
//	DELETE /v1/jobs/{id}                  cancel
//	GET  /v1/jobs/{id}/events             SSE: status and preview events
//	GET  /v1/jobs/{id}/images/{n}.png     an image with its metadata
//	GET  /v1/images                       this server's images, newest first
//	GET  /v1/info                         models, limits, options for clients
//	POST /v1/login                        the playground's key cookie
package server

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
)

// Config configures a server.
type Config struct {
	// Jobs runs the jobs.
	Jobs jobs.Service
	// Models describes the loaded models, the base first; called per
	// request (hashes may arrive after the start).
	Models func() []Model
	// Version is the program's version ("sdxl-run v1.2.0").
	Version string
	// Limits bound the jobs (zero: the engine's defaults).
	Limits jobspec.Limits
	// LoRADir is the folder /sdapi/v1/loras lists ("": none).
	LoRADir string
	// LoRAs, when set, lists the LoRAs instead of LoRADir (a front end
	// over NATS lists its workers' folders).
	LoRAs func() ([]LoRAFile, error)
	// APIKey, when set, is required on every API request.
	APIKey string
	// CORSOrigin allows cross-origin requests from this origin ("*": any);
	// "" sends no CORS headers.
	CORSOrigin string
	// MaxBodyBytes bounds request bodies (default 64 MiB: a base64 input
	// image of the largest allowed size fits).
	MaxBodyBytes int64
	// Logf logs server errors (nil: none).
	Logf func(format string, a ...any)
}

// Model describes one loaded model.
type Model struct {
	Role string `json:"role"` // "base" or "refiner"
	// Name is A1111's model_name (file name without extension, or the
	// folder's name); File the file or folder name as loaded.
	Name string `json:"name"`
	File string `json:"file"`
	// Hash is A1111's short hash (10 hex digits), SHA256 the whole one
	// ("" until computed).
	Hash   string `json:"hash,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// MarshalJSON adds the title.
func (m Model) MarshalJSON() ([]byte, error) {
	type plain Model
	return json.Marshal(struct {
		plain
		Title string `json:"title"`
	}{plain(m), m.Title()})
}

// Title is A1111's checkpoint title: "FILE [HASH]".
func (m Model) Title() string {
	if m.Hash == "" {
		return m.File
	}
	return m.File + " [" + m.Hash + "]"
}

// matches reports whether name designates m, as A1111's
// checkpoint_aliases do (title, file, name, hashes).
func (m Model) matches(name string) bool {
	name = strings.TrimSpace(name)
	for _, a := range []string{m.Title(), m.File, m.Name, m.Hash, m.SHA256} {
		if a != "" && name == a {
			return true
		}
	}
	return false
}

// Server is the HTTP handler.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	options *options
}

// New returns the server's handler.
func New(cfg Config) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 20
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Models == nil {
		cfg.Models = func() []Model { return nil }
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	s := &Server{cfg: cfg, mux: http.NewServeMux(), options: newOptions()}
	s.routes()
	return s
}

func (s *Server) routes() {
	s.playgroundRoutes()
	s.a1111Routes()
	s.openAIRoutes()
	s.jobRoutes()
}

// ServeHTTP applies the limits, CORS and authentication, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			s.cfg.Logf("panic serving %s %s: %v", r.Method, r.URL.Path, v)
			writeDetail(w, http.StatusInternalServerError, "internal error")
		}
	}()
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if s.cors(w, r) {
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	}
	if !s.public(r) && !s.authorized(r) {
		w.Header().Add("WWW-Authenticate", `Bearer realm="sdxl-run"`)
		w.Header().Add("WWW-Authenticate", `Basic realm="sdxl-run"`)
		writeDetail(w, http.StatusUnauthorized, "missing or wrong API key: send Authorization: Bearer KEY")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// cors answers CORS for the allowed origin; it reports a preflight
// request it has answered.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if s.cfg.CORSOrigin == "" || origin == "" || (s.cfg.CORSOrigin != "*" && origin != s.cfg.CORSOrigin) {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// IsLoopback reports whether a listen address only accepts connections
// from this machine ("127.0.0.1:7860", "localhost:7860", "[::1]:0"); an
// empty host listens on every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckListen refuses a listen address reachable from other machines
// without an API key, unless insecure.
func CheckListen(addr, apiKey string, insecure bool) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%q: want HOST:PORT, e.g. 127.0.0.1:7860", addr)
	}
	if IsLoopback(addr) || apiKey != "" || insecure {
		return nil
	}
	return fmt.Errorf("%s is reachable from other machines: give --api-key KEY (clients then send Authorization: Bearer KEY), or --insecure to serve without one", addr)
}
