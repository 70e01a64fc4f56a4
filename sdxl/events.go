package sdxl

import (
	"image"
	"time"
)

// Stage names a part of a run in progress events.
type Stage string

const (
	// StageText is prompt encoding (once per model that runs).
	StageText Stage = "text"
	// StageBase and StageRefiner are the denoising loops.
	StageBase    Stage = "base"
	StageRefiner Stage = "refiner"
	// StageVAE is the VAE decode of the final latents.
	StageVAE Stage = "vae"
)

// Event reports progress. A run sends, in order: for each stage a start
// event (Step 0) and one event per finished unit (Step 1..Steps): text
// encodings, denoising steps (with the latents), the decode (one unit, or
// one per tile with VAE tiling).
type Event struct {
	Stage Stage
	// Step counts the stage's finished units out of Steps.
	Step, Steps int
	// Timestep is the denoising step's timestep (0 for other stages).
	Timestep float64
	// Done and Total count the whole run's units: every denoising step,
	// text encoding and the decode.
	Done, Total int
	// Elapsed is the time since the run started; ETA estimates the time
	// left from the measured step times (0 before the first step).
	Elapsed, ETA time.Duration
	// Latents are the latents after a denoising step, [N, C, h, w] in
	// LatentShape (nil for other events). They are the run's own slice:
	// copy them to keep them.
	Latents     []float32
	LatentShape [4]int
}

// Fraction is Done/Total, in [0, 1].
func (e Event) Fraction() float64 {
	if e.Total == 0 {
		return 0
	}
	return float64(e.Done) / float64(e.Total)
}

// Preview returns a cheap RGB picture of image i of the batch at latent
// resolution (see LatentPreview), or nil when the event has no latents.
func (e Event) Preview(i int) *image.NRGBA {
	if e.Latents == nil {
		return nil
	}
	return LatentPreview(e.Latents, e.LatentShape, i)
}

// tracker turns a run's milestones into events with timing.
type tracker struct {
	fn    func(Event) error
	start time.Time
	total int
	done  int
	// texts and textsDone count the prompt encodings.
	texts, textsDone int
	// stageSteps is the running stage's step count.
	stageSteps int
	// stepTime and steps measure the denoising steps for the ETA.
	stepTime  time.Duration
	steps     int
	lastStep  time.Time
	remaining int // denoising steps still to run
	decode    bool
}

func newTracker(fn func(Event) error, pl *plan) *tracker {
	t := &tracker{fn: fn, start: time.Now()}
	for _, st := range pl.stages {
		t.remaining += len(st.timesteps)
		if st.embeds == nil {
			t.texts++
		}
	}
	t.decode = !pl.stages[len(pl.stages)-1].latentOutput
	t.total = t.remaining + t.texts
	if t.decode {
		t.total++
	}
	return t
}

func (t *tracker) send(e Event) error {
	if t.fn == nil {
		return nil
	}
	e.Done, e.Total = t.done, t.total
	e.Elapsed = time.Since(t.start)
	e.ETA = t.eta()
	return t.fn(e)
}

// eta assumes the remaining steps take the mean measured step time, and
// the decode about one step.
func (t *tracker) eta() time.Duration {
	if t.steps == 0 {
		return 0
	}
	left := t.remaining
	if t.decode {
		left++
	}
	return t.stepTime / time.Duration(t.steps) * time.Duration(left)
}

// text announces a prompt encoding.
func (t *tracker) text() error {
	return t.send(Event{Stage: StageText, Step: t.textsDone, Steps: t.texts})
}

func (t *tracker) textDone() error {
	t.done++
	t.textsDone++
	return t.send(Event{Stage: StageText, Step: t.textsDone, Steps: t.texts})
}

// stage announces a denoising loop of steps steps, or the decode.
func (t *tracker) stage(s Stage, steps int) error {
	t.lastStep = time.Now()
	t.stageSteps = steps
	return t.send(Event{Stage: s, Steps: steps})
}

// step reports denoising step i (1-based) of the running stage.
func (t *tracker) step(s Stage, i int, ts float64, latents []float32, shape [4]int) error {
	now := time.Now()
	t.stepTime += now.Sub(t.lastStep)
	t.lastStep = now
	t.steps++
	t.remaining--
	t.done++
	return t.send(Event{Stage: s, Step: i, Steps: t.stageSteps, Timestep: ts, Latents: latents, LatentShape: shape})
}

// tile reports tile i (1-based) of a tiled decode done, short of the last
// (decoded reports that one).
func (t *tracker) tile(i int) error {
	return t.send(Event{Stage: StageVAE, Step: i, Steps: t.stageSteps})
}

func (t *tracker) decoded() error {
	t.done++
	t.decode = false
	return t.send(Event{Stage: StageVAE, Step: t.stageSteps, Steps: t.stageSteps})
}
