package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
)

// The native asynchronous job API.
func (s *Server) jobRoutes() {
	m := s.mux
	m.HandleFunc("POST /v1/jobs", s.submitJob)
	m.HandleFunc("GET /v1/jobs", s.listJobs)
	m.HandleFunc("GET /v1/jobs/{id}", s.getJob)
	m.HandleFunc("DELETE /v1/jobs/{id}", s.cancelJob)
	m.HandleFunc("GET /v1/jobs/{id}/events", s.jobEvents)
	m.HandleFunc("GET /v1/jobs/{id}/images/{file}", s.jobImage)
	m.HandleFunc("GET /v1/images", s.gallery)
	m.HandleFunc("GET /v1/info", s.info)
	m.HandleFunc("POST /v1/login", s.login)
}

// submitJob queues a job given in the native form: 202 with its status
// and Location.
func (s *Server) submitJob(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	spec, err := jobspec.Decode(body)
	if err != nil {
		writeError(w, err)
		return
	}
	st, err := s.cfg.Jobs.Submit(r.Context(), spec)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Location", "/v1/jobs/"+st.ID)
	writeJSON(w, http.StatusAccepted, st)
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"jobs": s.cfg.Jobs.List()})
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	st, err := s.cfg.Jobs.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	st, err := s.cfg.Jobs.Cancel(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// jobImage serves /v1/jobs/{id}/images/{n}.png.
func (s *Server) jobImage(w http.ResponseWriter, r *http.Request) {
	id, file := r.PathValue("id"), r.PathValue("file")
	n, err := strconv.Atoi(strings.TrimSuffix(file, ".png"))
	if !strings.HasSuffix(file, ".png") || err != nil || n < 0 {
		writeDetail(w, http.StatusNotFound, "no such image: want /v1/jobs/ID/images/N.png")
		return
	}
	b, err := s.cfg.Jobs.Image(id, n)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`inline; filename="sdxl-%s-%d.png"`, id, n))
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	w.Write(b)
}

// galleryImage is one image of this server, for the playground.
type galleryImage struct {
	jobs.Image
	Job     string    `json:"job"`
	Created time.Time `json:"created"`
}

// gallery lists the kept images, newest first.
func (s *Server) gallery(w http.ResponseWriter, r *http.Request) {
	out := []galleryImage{}
	for _, st := range s.cfg.Jobs.List() {
		for _, im := range st.Images {
			out = append(out, galleryImage{Image: im, Job: st.ID, Created: st.Created})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	writeJSON(w, http.StatusOK, map[string]any{"images": out})
}

// jobEvents streams a job as Server-Sent Events: "status" events (the
// job's Status as JSON) at every change and step, "preview" events
// ({"step", "image": data URL}) when a latent preview is ready, and a
// last "end" event with the final status.
func (s *Server) jobEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ch, err := s.cfg.Jobs.Subscribe(r.Context(), id)
	if err != nil {
		writeError(w, err)
		return
	}
	flusher, _ := w.(http.Flusher)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	var last jobs.Status
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				if st, err := s.cfg.Jobs.Get(id); err == nil {
					last = st
				}
				if r.Context().Err() == nil {
					send("end", last)
				}
				return
			}
			last = ev.Status
			send("status", ev.Status)
			if ev.Preview != nil {
				send("preview", map[string]any{"step": ev.Status.Step, "stage": ev.Status.Stage,
					"image": "data:image/png;base64," + base64.StdEncoding.EncodeToString(ev.Preview)})
			}
		case <-keepAlive.C:
			fmt.Fprint(w, ": keep-alive\n\n")
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

// info tells clients (the playground) what this server offers.
func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	base, refiner := s.modelsByRole()
	loras, err := s.loras()
	if err != nil {
		s.cfg.Logf("listing LoRAs: %v", err)
	}
	names := []string{}
	for _, l := range loras {
		names = append(names, l.Name)
	}
	l := s.cfg.Limits
	writeJSON(w, http.StatusOK, map[string]any{
		"version": s.cfg.Version, "base": base, "refiner": refiner, "loras": names, "lora_dir": s.cfg.LoRADir != "" || s.cfg.LoRAs != nil,
		"samplers": jobspec.SamplerNames(), "schedulers": jobspec.SchedulerLabels(),
		"limits":   map[string]int{"max_pixels": l.MaxPixels, "max_steps": l.MaxSteps, "max_images": l.MaxImages},
		"defaults": jobspec.New(jobspec.Native), "auth": s.cfg.APIKey != "",
	})
}
