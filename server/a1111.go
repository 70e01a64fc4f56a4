package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
)

// The AUTOMATIC1111 API (modules/api/api.py of stable-diffusion-webui
// 1.10): the subset its clients use, answered in its shapes.
func (s *Server) a1111Routes() {
	m := s.mux
	m.HandleFunc("POST /sdapi/v1/txt2img", func(w http.ResponseWriter, r *http.Request) { s.generateA1111(w, r, false) })
	m.HandleFunc("POST /sdapi/v1/img2img", func(w http.ResponseWriter, r *http.Request) { s.generateA1111(w, r, true) })
	m.HandleFunc("GET /sdapi/v1/progress", s.progressA1111)
	m.HandleFunc("POST /sdapi/v1/interrupt", s.interruptA1111)
	m.HandleFunc("POST /sdapi/v1/skip", s.skipA1111)
	m.HandleFunc("GET /sdapi/v1/samplers", s.samplersA1111)
	m.HandleFunc("GET /sdapi/v1/schedulers", s.schedulersA1111)
	m.HandleFunc("GET /sdapi/v1/sd-models", s.modelsA1111)
	m.HandleFunc("GET /sdapi/v1/loras", s.lorasA1111)
	m.HandleFunc("GET /sdapi/v1/options", s.getOptions)
	m.HandleFunc("POST /sdapi/v1/options", s.setOptions)
	m.HandleFunc("POST /sdapi/v1/png-info", s.pngInfo)
	for _, p := range []string{"sd-vae", "upscalers", "latent-upscale-modes", "prompt-styles", "face-restorers", "hypernetworks"} {
		// Lists of things this engine does not have: empty, so that
		// clients that read them on connecting do not fail.
		m.HandleFunc("GET /sdapi/v1/"+p, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, []any{}) })
	}
}

// base and refiner are the loaded models (nil when absent).
func (s *Server) modelsByRole() (base, refiner *Model) {
	for _, m := range s.cfg.Models() {
		switch m.Role {
		case "base":
			base = &m
		case "refiner":
			refiner = &m
		}
	}
	return base, refiner
}

// checkCheckpoint accepts the loaded model's names (this server cannot
// switch models).
func (s *Server) checkCheckpoint(name string) error {
	if name == "" {
		return nil
	}
	var titles []string
	for _, m := range s.cfg.Models() {
		if m.matches(name) {
			return nil
		}
		titles = append(titles, m.Title())
	}
	return fmt.Errorf("%q is not loaded: this server serves %s only (it cannot switch models)", name, strings.Join(titles, ", "))
}

// a1111Spec reads an A1111 body into a job: the checkpoint must be the
// loaded one, refiner_checkpoint names the loaded refiner (or none).
func (s *Server) a1111Spec(body []byte, img2img bool) (jobspec.A1111Request, error) {
	req, err := jobspec.DecodeA1111(body, img2img)
	if err != nil {
		return req, err
	}
	if err := s.checkCheckpoint(req.Checkpoint); err != nil {
		return req, &jobspec.FieldError{Field: "override_settings.sd_model_checkpoint", Message: err.Error()}
	}
	if rc := req.RefinerCheckpoint; rc != nil {
		_, refiner := s.modelsByRole()
		on := *rc != "" && !strings.EqualFold(*rc, "none")
		switch {
		case on && (refiner == nil || !refiner.matches(*rc)):
			loaded := "none is loaded"
			if refiner != nil {
				loaded = "the loaded refiner is " + refiner.Title()
			}
			return req, &jobspec.FieldError{Field: "refiner_checkpoint", Message: fmt.Sprintf("%q is not available (%s)", *rc, loaded)}
		case refiner != nil:
			req.Spec.Refiner = &on
		}
	}
	if req.Spec.ClipSkip == 0 {
		req.Spec.ClipSkip = s.options.clipSkip()
	}
	return req, nil
}

// generateA1111 serves txt2img and img2img: the job runs through the
// queue and the answer waits for it.
func (s *Server) generateA1111(w http.ResponseWriter, r *http.Request, img2img bool) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	req, err := s.a1111Spec(body, img2img)
	if err != nil {
		writeError(w, err)
		return
	}
	start := time.Now()
	res, err := s.runSync(r, req.Spec)
	if err != nil {
		if r.Context().Err() == nil {
			writeError(w, err)
		}
		return
	}
	images := []string{}
	if req.SendImages {
		for _, b := range res.pngs {
			images = append(images, base64.StdEncoding.EncodeToString(b))
		}
	}
	info, err := json.Marshal(s.a1111Info(res.status, req, start))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"images": images, "parameters": parameters(body, img2img), "info": string(info)})
}

// parameters echoes the request, as A1111's vars(request) does (without
// the input images unless include_init_images).
func parameters(body []byte, img2img bool) map[string]any {
	var p map[string]any
	json.Unmarshal(body, &p)
	if p == nil {
		p = map[string]any{}
	}
	if img2img && p["include_init_images"] != true {
		p["init_images"], p["mask"] = nil, nil
	}
	return p
}

// a1111Info is A1111's Processed.js(): what ran, per image.
func (s *Server) a1111Info(st jobs.Status, req jobspec.A1111Request, start time.Time) map[string]any {
	sp := st.Spec
	var seeds []uint64
	var infotexts, prompts, negatives []string
	for _, im := range st.Images {
		seeds = append(seeds, im.Seed)
		infotexts = append(infotexts, im.Infotext)
		prompts, negatives = append(prompts, sp.Prompt), append(negatives, sp.NegativePrompt)
	}
	var seed uint64
	if len(seeds) > 0 {
		seed = seeds[0]
	} else if sp.Seed >= 0 {
		seed = uint64(sp.Seed)
	}
	width, height := sp.Width, sp.Height
	if len(st.Images) > 0 {
		width, height = st.Images[0].Width, st.Images[0].Height
	}
	info := map[string]any{
		"prompt": sp.Prompt, "all_prompts": prompts, "negative_prompt": sp.NegativePrompt,
		"all_negative_prompts": negatives, "seed": seed, "all_seeds": seeds, "subseed": -1, "all_subseeds": seeds,
		"subseed_strength": 0, "width": width, "height": height, "sampler_name": sp.SamplerName,
		"scheduler": sp.Scheduler, "cfg_scale": sp.CFGScale, "steps": sp.Steps, "batch_size": sp.BatchSize,
		"n_iter": sp.NIter, "restore_faces": false, "denoising_strength": sp.DenoisingStrength,
		"clip_skip": max(sp.ClipSkip, 1), "infotexts": infotexts, "index_of_first_image": 0, "styles": []string{},
		"job_timestamp": start.Format("20060102150405"), "version": s.cfg.Version, "job_id": st.ID,
		"interrupted": st.State == jobs.Cancelled, "warnings": st.Warnings, "ignored_fields": req.Ignored,
	}
	if base, _ := s.modelsByRole(); base != nil {
		info["sd_model_name"], info["sd_model_hash"] = base.Name, base.Hash
	}
	return info
}

// progressA1111 is /sdapi/v1/progress: the running job, its latest preview
// (unless skip_current_image=true) and the queue.
func (s *Server) progressA1111(w http.ResponseWriter, r *http.Request) {
	st, preview, queued, ok := s.cfg.Jobs.Current()
	state := map[string]any{"skipped": false, "interrupted": false, "stopping_generation": false, "job": "",
		"job_count": queued, "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
	if !ok {
		writeJSON(w, http.StatusOK, map[string]any{"progress": 0, "eta_relative": 0, "state": state,
			"current_image": nil, "textinfo": nil, "current_task": nil})
		return
	}
	state["job"], state["job_count"], state["job_no"] = st.ID, queued+1, max(st.Batch-1, 0)
	state["sampling_step"], state["sampling_steps"] = st.Step, st.Steps
	state["job_timestamp"] = st.Created.Format("20060102150405")
	var img any
	if preview != nil && r.URL.Query().Get("skip_current_image") != "true" {
		img = base64.StdEncoding.EncodeToString(preview)
	}
	eta := 0.0
	if st.Progress > 0 && st.Started != nil {
		el := time.Since(*st.Started).Seconds()
		eta = el/st.Progress - el
	}
	writeJSON(w, http.StatusOK, map[string]any{"progress": st.Progress, "eta_relative": eta, "state": state,
		"current_image": img, "textinfo": fmt.Sprintf("%s %d/%d", st.Stage, st.Step, st.Steps), "current_task": st.ID})
}

// interruptA1111 cancels the running job (A1111's interrupt).
func (s *Server) interruptA1111(w http.ResponseWriter, r *http.Request) {
	if st, _, _, ok := s.cfg.Jobs.Current(); ok {
		s.cfg.Jobs.Cancel(st.ID)
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// skipA1111 ends the running batch of the running job.
func (s *Server) skipA1111(w http.ResponseWriter, r *http.Request) {
	if st, _, _, ok := s.cfg.Jobs.Current(); ok {
		s.cfg.Jobs.Skip(st.ID)
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) samplersA1111(w http.ResponseWriter, r *http.Request) {
	out := []map[string]any{}
	for _, n := range jobspec.SamplerNames() {
		out = append(out, map[string]any{"name": n, "aliases": []string{}, "options": map[string]any{}})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) schedulersA1111(w http.ResponseWriter, r *http.Request) {
	out := []map[string]any{}
	for _, l := range jobspec.SchedulerLabels() {
		out = append(out, map[string]any{"name": strings.ToLower(l), "label": l, "aliases": nil,
			"default_rho": -1, "need_inner_model": false})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) modelsA1111(w http.ResponseWriter, r *http.Request) {
	out := []map[string]any{}
	for _, m := range s.cfg.Models() {
		out = append(out, map[string]any{"title": m.Title(), "model_name": m.Name, "hash": nilIfEmpty(m.Hash),
			"sha256": nilIfEmpty(m.SHA256), "filename": m.File, "config": nil})
	}
	writeJSON(w, http.StatusOK, out)
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Server) getOptions(w http.ResponseWriter, r *http.Request) {
	title, hash := "", ""
	if base, refiner := s.modelsByRole(); base != nil {
		title, hash = base.Title(), base.SHA256
	} else if refiner != nil {
		title, hash = refiner.Title(), refiner.SHA256
	}
	writeJSON(w, http.StatusOK, s.options.snapshot(title, hash))
}

func (s *Server) setOptions(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		writeDetail(w, http.StatusUnprocessableEntity, "body: want a JSON object of options")
		return
	}
	if err := s.options.set(raw, s.checkCheckpoint); err != nil {
		writeDetail(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, nil)
}
