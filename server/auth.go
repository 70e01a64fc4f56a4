package server

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
)

// keyCookie holds the API key for the playground, whose images and event
// streams cannot send an Authorization header.
const keyCookie = "sdxl_key"

// public reports requests that need no key: the playground's page and
// files (they hold no data) and its login.
func (s *Server) public(r *http.Request) bool {
	if s.cfg.APIKey == "" {
		return true
	}
	p := r.URL.Path
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && (p == "/" || strings.HasPrefix(p, "/static/")) ||
		(r.Method == http.MethodPost && p == "/v1/login")
}

// authorized checks the key: Authorization: Bearer KEY; Basic with KEY as
// the password (A1111's --api-auth clients, e.g. Open WebUI's "user:KEY")
// or as the whole credentials; or the playground's cookie.
func (s *Server) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(auth, " ")
	cred = strings.TrimSpace(cred)
	switch strings.ToLower(scheme) {
	case "bearer":
		return s.keyIs(cred)
	case "basic":
		b, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return false
		}
		_, pass, ok := strings.Cut(string(b), ":")
		return s.keyIs(string(b)) || (ok && s.keyIs(pass))
	}
	if c, err := r.Cookie(keyCookie); err == nil {
		return s.keyIs(c.Value)
	}
	return false
}

func (s *Server) keyIs(k string) bool {
	return subtle.ConstantTimeCompare([]byte(k), []byte(s.cfg.APIKey)) == 1
}

// login sets the key cookie when the posted key is right: {"key": KEY}.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Key string `json:"key"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeDetail(w, http.StatusUnprocessableEntity, "body: want {\"key\": \"...\"}")
		return
	}
	if s.cfg.APIKey != "" && !s.keyIs(body.Key) {
		writeDetail(w, http.StatusUnauthorized, "wrong API key")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: keyCookie, Value: body.Key, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}
