package jobs

import (
	"bytes"
	"image/png"
	"time"

	"github.com/sdxl-go/sdxl/sdxl"
)

// Tracker follows a running job's engine events for its Status: the
// progress fields, and which events carry a preview picture (at most one
// every Every, and always a stage's last step). Local and the NATS
// workers (package natsjobs) share it, so that both report progress the
// same way. It is not safe for concurrent use.
type Tracker struct {
	// Every is the least time between two previews.
	Every time.Duration
	// Batches is the job's number of batches (n_iter).
	Batches int

	batch, step, steps int
	stage              string
	eta, progress      float64
	lastPreview        time.Time
}

// StartBatch records that batch k (0-based) begins.
func (t *Tracker) StartBatch(k int) { t.batch = k + 1 }

// Event records event ev of batch k (0-based) and reports whether it
// should carry a preview picture.
func (t *Tracker) Event(k int, ev sdxl.Event) bool {
	t.batch = k + 1
	t.progress = (float64(k) + ev.Fraction()) / float64(max(t.Batches, 1))
	t.stage, t.step, t.steps, t.eta = string(ev.Stage), ev.Step, ev.Steps, ev.ETA.Seconds()
	want := ev.Latents != nil && (time.Since(t.lastPreview) >= t.Every || ev.Step == ev.Steps)
	if want {
		t.lastPreview = time.Now()
	}
	return want
}

// Finish records a job's end: a done job is all done.
func (t *Tracker) Finish(s State) {
	if s == Done {
		t.progress = 1
	}
}

// Fill sets st's progress fields: the fraction always, the running batch
// and stage while st is running.
func (t *Tracker) Fill(st *Status) {
	st.Progress = t.progress
	if st.State == Running {
		st.Batch, st.Stage, st.Step, st.Steps, st.ETA = t.batch, t.stage, t.step, t.steps, t.eta
	}
}

// PreviewPNG encodes the latent preview of ev's first image as PNG (nil
// when the event has none). Call it from the progress callback: the
// event's latents belong to the running step.
func PreviewPNG(ev sdxl.Event) []byte {
	img := ev.Preview(0)
	if img == nil {
		return nil
	}
	var buf bytes.Buffer
	if png.Encode(&buf, img) != nil {
		return nil
	}
	return buf.Bytes()
}

// ImageOf describes image n (0-based) of job id for the API.
func ImageOf(id string, n int, o Output) Image {
	return Image{Index: n, URL: ImageURL(id, n), Seed: o.Seed, Width: o.Width, Height: o.Height, Infotext: o.Infotext}
}
