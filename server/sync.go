package server

import (
	"net/http"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
)

// finished is a job run to its end for a synchronous endpoint.
type finished struct {
	status jobs.Status
	pngs   [][]byte
}

// runSync submits a job and waits for its end; a client that goes away
// cancels it. A failed job is an error; a cancelled one (interrupt) ends
// with the images of its finished batches.
func (s *Server) runSync(r *http.Request, spec jobspec.Spec) (*finished, error) {
	svc := s.cfg.Jobs
	st, err := svc.Submit(r.Context(), spec)
	if err != nil {
		return nil, err
	}
	ch, err := svc.Subscribe(r.Context(), st.ID)
	if err != nil {
		return nil, err
	}
	for ev := range ch {
		st = ev.Status
	}
	if err := r.Context().Err(); err != nil {
		svc.Cancel(st.ID)
		return nil, err
	}
	if !st.State.Finished() {
		if st, err = svc.Get(st.ID); err != nil {
			return nil, err
		}
	}
	if st.State == jobs.Failed {
		return nil, jobFailed{st.Error}
	}
	out := &finished{status: st}
	for _, im := range st.Images {
		b, err := svc.Image(st.ID, im.Index)
		if err != nil {
			return nil, err
		}
		out.pngs = append(out.pngs, b)
	}
	return out, nil
}

// jobFailed is a job that ran and failed (a 500 answer).
type jobFailed struct{ msg string }

func (e jobFailed) Error() string { return "generation failed: " + e.msg }
