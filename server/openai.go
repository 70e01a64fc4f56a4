package server

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sdxl-go/sdxl/jobspec"
)

// The OpenAI images API (POST /v1/images/generations), as sd.cpp's server
// and other local servers offer it: prompt, n, size "WxH",
// response_format b64_json (default) or url; model, quality, style and
// user are accepted and ignored. negative_prompt, steps, seed and
// cfg_scale are extensions. Errors are OpenAI's {"error": {...}}.
func (s *Server) openAIRoutes() {
	s.mux.HandleFunc("POST /v1/images/generations", s.imagesGenerations)
}

type openAIRequest struct {
	Prompt         string          `json:"prompt"`
	N              *int            `json:"n"`
	Size           string          `json:"size"`
	ResponseFormat string          `json:"response_format"`
	Model          json.RawMessage `json:"model"`
	NegativePrompt string          `json:"negative_prompt"`
	Steps          int             `json:"steps"`
	Seed           *int64          `json:"seed"`
	CFGScale       *float64        `json:"cfg_scale"`
}

// openAIError answers in OpenAI's error shape.
func openAIError(w http.ResponseWriter, code int, param, msg string) {
	typ := "invalid_request_error"
	if code >= 500 {
		typ = "server_error"
	}
	var p any
	if param != "" {
		p = param
	}
	writeJSON(w, code, map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": p, "code": nil}})
}

func (s *Server) imagesGenerations(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	spec, format, err := openAISpec(body)
	if err != nil {
		var fe *jobspec.FieldError
		errors.As(err, &fe)
		openAIError(w, http.StatusBadRequest, fe.Field, err.Error())
		return
	}
	res, err := s.runSync(r, spec)
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		code, msg := errorStatus(err)
		var fe *jobspec.FieldError
		param := ""
		if errors.As(err, &fe) {
			code, param = http.StatusBadRequest, fe.Field
		}
		setRetryAfter(w, err)
		openAIError(w, code, param, msg)
		return
	}
	data := []map[string]any{}
	for i, b := range res.pngs {
		if format == "url" {
			data = append(data, map[string]any{"url": absoluteURL(r, res.status.Images[i].URL), "revised_prompt": spec.Prompt})
		} else {
			data = append(data, map[string]any{"b64_json": base64.StdEncoding.EncodeToString(b), "revised_prompt": spec.Prompt})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"created": time.Now().Unix(), "data": data})
}

// openAISpec maps an OpenAI body to a job.
func openAISpec(body []byte) (jobspec.Spec, string, error) {
	spec := jobspec.New(jobspec.Native)
	var req openAIRequest
	if err := json.Unmarshal(body, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return spec, "", &jobspec.FieldError{Field: te.Field, Message: fmt.Sprintf("want %s, got a JSON %s", te.Type, te.Value)}
		}
		return spec, "", &jobspec.FieldError{Field: "body", Message: "malformed JSON: " + err.Error()}
	}
	if strings.TrimSpace(req.Prompt) == "" {
		return spec, "", &jobspec.FieldError{Field: "prompt", Message: "required"}
	}
	spec.Prompt, spec.NegativePrompt = req.Prompt, req.NegativePrompt
	if req.N != nil {
		spec.BatchSize = *req.N
	}
	if req.Steps != 0 {
		spec.Steps = req.Steps
	}
	if req.Seed != nil {
		spec.Seed = *req.Seed
	}
	if req.CFGScale != nil {
		spec.CFGScale = *req.CFGScale
	}
	if req.Size != "" && req.Size != "auto" {
		w, h, ok := parseSize(req.Size)
		if !ok {
			return spec, "", &jobspec.FieldError{Field: "size", Message: fmt.Sprintf("%q: want WIDTHxHEIGHT, e.g. 1024x1024", req.Size)}
		}
		spec.Width, spec.Height = w, h
	}
	format := req.ResponseFormat
	switch format {
	case "", "b64_json":
		format = "b64_json"
	case "url":
	default:
		return spec, "", &jobspec.FieldError{Field: "response_format", Message: fmt.Sprintf("%q: want b64_json or url", format)}
	}
	if spec.BatchSize < 1 {
		return spec, "", &jobspec.FieldError{Field: "n", Message: fmt.Sprintf("%d: want 1 or more", spec.BatchSize)}
	}
	return spec, format, spec.Check(jobspec.Limits{})
}

func parseSize(s string) (int, int, bool) {
	a, b, ok := strings.Cut(strings.ToLower(s), "x")
	w, err1 := strconv.Atoi(a)
	h, err2 := strconv.Atoi(b)
	return w, h, ok && err1 == nil && err2 == nil && w > 0 && h > 0
}

// absoluteURL makes a server path absolute with the request's host.
func absoluteURL(r *http.Request, path string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + path
}
