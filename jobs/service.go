// Package jobs runs generation jobs (package jobspec) behind one small
// interface, Service, that the HTTP server (package server) talks to:
// submit a job, read its state, cancel it, follow its progress and
// previews, fetch its images.
//
// Local is the in-process implementation: one worker goroutine per engine
// (one per device) takes jobs from one bounded queue in order. A Runner
// executes one job on an engine and makes its PNGs with the metadata
// sdxl-run writes (package pngmeta); a queue worker of another process
// (NATS) reuses it as it is.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sdxl-go/sdxl/jobspec"
)

// Service is the job API of a server. Implementations are safe for
// concurrent use.
type Service interface {
	// Submit checks and queues a job. A bad job is a *jobspec.FieldError,
	// a full queue a *QueueFullError, a closed service ErrClosed. The
	// returned status holds the normalized spec (its seed drawn).
	Submit(ctx context.Context, spec jobspec.Spec) (Status, error)
	// Get returns a job's status (ErrNotFound for an unknown or expired
	// id).
	Get(id string) (Status, error)
	// List returns the queued, running and kept finished jobs, oldest
	// first.
	List() []Status
	// Cancel cancels a queued or running job: a running job stops within
	// one denoising step and keeps the images of its finished batches. A
	// finished job is ErrFinished.
	Cancel(id string) (Status, error)
	// Skip ends the running batch of a job (A1111's skip): the job goes
	// on with its next batch.
	Skip(id string) error
	// Subscribe follows a job: the channel gets its status at every change
	// and step (with a preview picture when there is one) and is closed
	// when the job ends or ctx is done. A slow reader misses intermediate
	// events, never the end: after the channel closes, Get has the final
	// status.
	Subscribe(ctx context.Context, id string) (<-chan Event, error)
	// Image returns image n (0-based, in the job's order) of a job as PNG
	// bytes with its metadata.
	Image(id string, n int) ([]byte, error)
	// Current is the running job (ok false when none) with its latest
	// preview (PNG, nil when none yet), and the number of jobs waiting.
	Current() (st Status, preview []byte, queued int, ok bool)
	// Close stops accepting jobs, cancels the queued and running ones and
	// waits for the workers (or ctx).
	Close(ctx context.Context) error
}

// State is a job's place in its life.
type State string

const (
	Queued    State = "queued"
	Running   State = "running"
	Done      State = "done"
	Failed    State = "failed"
	Cancelled State = "cancelled"
)

// Finished reports a state that no longer changes.
func (s State) Finished() bool { return s == Done || s == Failed || s == Cancelled }

// Status is what the API says about a job.
type Status struct {
	ID    string `json:"id"`
	State State  `json:"state"`
	// Position is the place in the queue (1 = next), 0 when not queued.
	Position int        `json:"queue_position,omitempty"`
	Created  time.Time  `json:"created"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	// Progress is the whole job's fraction done, 0 to 1.
	Progress float64 `json:"progress"`
	// Batch is the running batch (1-based) of Batches (n_iter).
	Batch   int `json:"batch,omitempty"`
	Batches int `json:"batches"`
	// Stage, Step and Steps describe the running part of the batch
	// (sdxl.Event): text, base, refiner or vae.
	Stage string `json:"stage,omitempty"`
	Step  int    `json:"step,omitempty"`
	Steps int    `json:"steps,omitempty"`
	// ETA estimates the seconds left of the running batch.
	ETA float64 `json:"eta_seconds,omitempty"`
	// Error says why a job failed.
	Error    string   `json:"error,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	Images   []Image  `json:"images,omitempty"`
	// Spec is the job as it runs (defaults filled, seed drawn), its input
	// images replaced by their SHA-256.
	Spec jobspec.Spec `json:"spec"`
}

// Image is one finished image of a job.
type Image struct {
	Index int `json:"index"`
	// URL is the image's path on the server: /v1/jobs/ID/images/N.png.
	URL    string `json:"url"`
	Seed   uint64 `json:"seed"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	// Infotext is the image's A1111 parameters text.
	Infotext string `json:"infotext"`
	// File is where the image was written (Config.OutputDir), if it was.
	File string `json:"-"`
}

// ImageURL is the path of image n of job id.
func ImageURL(id string, n int) string { return fmt.Sprintf("/v1/jobs/%s/images/%d.png", id, n) }

// Event is one step of a job's life.
type Event struct {
	Status Status
	// Preview is a PNG of the latent preview of the batch's first image
	// (at latent resolution: an eighth of the image's size), on steps that
	// have one.
	Preview []byte
}

// Errors of the Service methods.
var (
	ErrNotFound = errors.New("no such job")
	ErrFinished = errors.New("the job has finished")
	ErrClosed   = errors.New("the server is shutting down")
	ErrNoImage  = errors.New("no such image")
	// ErrUnavailable: no worker can take the job now (a front end over
	// NATS with no live worker of its model); HTTP 503.
	ErrUnavailable = errors.New("no worker is available")
)

// QueueFullError refuses a job when the queue is full.
type QueueFullError struct {
	Queued int
	// RetryAfter estimates when a place frees up.
	RetryAfter time.Duration
}

func (e *QueueFullError) Error() string {
	return fmt.Sprintf("the queue is full (%d jobs waiting): retry in about %.0fs", e.Queued, e.RetryAfter.Seconds())
}
