package jobs

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/sdxl-go/sdxl/internal/atomicfile"
	"github.com/sdxl-go/sdxl/jobspec"
)

// Config configures a Local service.
type Config struct {
	// MaxQueue bounds the jobs waiting (not counting running ones); a job
	// beyond it is refused with a *QueueFullError (default 16).
	MaxQueue int
	// Keep is how many finished jobs (with their images) stay available
	// (default 64); older ones are forgotten.
	Keep int
	// OutputDir, when set, also receives every image as a PNG file
	// (written atomically, never replacing a file).
	OutputDir string
	// PreviewEvery is the least time between two preview pictures of a
	// job (default 100ms); the last step of a stage always has one.
	PreviewEvery time.Duration
	// Logf, when set, logs job failures and file errors.
	Logf func(format string, a ...any)
}

func (c Config) withDefaults() Config {
	if c.MaxQueue <= 0 {
		c.MaxQueue = 16
	}
	if c.Keep <= 0 {
		c.Keep = 64
	}
	if c.PreviewEvery <= 0 {
		c.PreviewEvery = 100 * time.Millisecond
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}

// Local runs jobs in this process: one worker goroutine per runner takes
// jobs from one queue, in order.
type Local struct {
	cfg     Config
	runners []*Runner

	mu       sync.Mutex
	cond     *sync.Cond
	queue    []*job
	jobs     map[string]*job
	finished []*job // in finishing order, for forgetting
	closed   bool
	// meanJob is a moving average of job durations (for Retry-After).
	meanJob time.Duration
	wg      sync.WaitGroup
}

// NewLocal starts one worker per runner (one per device). Jobs are
// checked with the first runner's engine.
func NewLocal(cfg Config, runners ...*Runner) *Local {
	if len(runners) == 0 {
		panic("jobs: NewLocal needs a runner")
	}
	l := &Local{cfg: cfg.withDefaults(), runners: runners, jobs: map[string]*job{}}
	l.cond = sync.NewCond(&l.mu)
	for _, r := range runners {
		l.wg.Add(1)
		go l.work(r)
	}
	return l
}

// Submit implements Service.
func (l *Local) Submit(ctx context.Context, spec jobspec.Spec) (Status, error) {
	p, err := l.runners[0].Prepare(spec)
	if err != nil {
		return Status{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Status{}, ErrClosed
	}
	if len(l.queue) >= l.cfg.MaxQueue {
		return Status{}, &QueueFullError{Queued: len(l.queue), RetryAfter: l.retryAfter()}
	}
	j := &job{id: newID(), prep: p, created: time.Now(), state: Queued, warnings: p.Warnings, record: p.Spec.Record(),
		track: Tracker{Every: l.cfg.PreviewEvery, Batches: p.Spec.NIter}}
	l.jobs[j.id] = j
	l.queue = append(l.queue, j)
	l.cond.Signal()
	return l.status(j), nil
}

// retryAfter estimates when the queue has room: the mean job time times
// the jobs ahead, shared by the workers (at least a second).
func (l *Local) retryAfter() time.Duration {
	mean := l.meanJob
	if mean == 0 {
		mean = 10 * time.Second
	}
	d := mean / time.Duration(len(l.runners))
	return max(d, time.Second)
}

func newID() string {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b[:])
}

// Get implements Service.
func (l *Local) Get(id string) (Status, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	j, ok := l.jobs[id]
	if !ok {
		return Status{}, ErrNotFound
	}
	return l.status(j), nil
}

// List implements Service.
func (l *Local) List() []Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Status, 0, len(l.jobs))
	for _, j := range l.jobs {
		out = append(out, l.status(j))
	}
	sortByCreated(out)
	return out
}

// Cancel implements Service.
func (l *Local) Cancel(id string) (Status, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	j, ok := l.jobs[id]
	if !ok {
		return Status{}, ErrNotFound
	}
	switch j.state {
	case Queued:
		l.removeQueued(j)
		l.finish(j, Cancelled, "")
	case Running:
		j.cancelRequested = true
		j.cancel()
	default:
		return l.status(j), ErrFinished
	}
	return l.status(j), nil
}

func (l *Local) removeQueued(j *job) {
	for i, q := range l.queue {
		if q == j {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			return
		}
	}
}

// Skip implements Service.
func (l *Local) Skip(id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	j, ok := l.jobs[id]
	if !ok {
		return ErrNotFound
	}
	if j.state == Running && j.batchCancel != nil {
		j.batchCancel()
	}
	return nil
}

// Image implements Service.
func (l *Local) Image(id string, n int) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	j, ok := l.jobs[id]
	if !ok {
		return nil, ErrNotFound
	}
	if n < 0 || n >= len(j.images) {
		return nil, ErrNoImage
	}
	return j.images[n].PNG, nil
}

// Current implements Service.
func (l *Local) Current() (Status, []byte, int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var cur *job
	for _, j := range l.jobs {
		if j.state == Running && (cur == nil || j.started.Before(cur.started)) {
			cur = j
		}
	}
	if cur == nil {
		return Status{}, nil, len(l.queue), false
	}
	return l.status(cur), cur.preview, len(l.queue), true
}

// Close implements Service: queued jobs are cancelled, running ones stop
// within one step; it returns when the workers have stopped or ctx ends.
func (l *Local) Close(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	for _, j := range l.queue {
		l.finish(j, Cancelled, "")
	}
	l.queue = nil
	for _, j := range l.jobs {
		if j.state == Running {
			j.cancelRequested = true
			j.cancel()
		}
	}
	l.cond.Broadcast()
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("jobs: workers still busy: %w", ctx.Err())
	}
}

// writeFile writes an image to the output folder under a new name.
func (l *Local) writeFile(j *job, n int, png []byte) string {
	if l.cfg.OutputDir == "" {
		return ""
	}
	name := fmt.Sprintf("%s-%s-%d.png", j.created.Format("20060102-150405"), j.id, n)
	path := filepath.Join(l.cfg.OutputDir, name)
	err := atomicfile.Write(path, false, func(w io.Writer) error { _, err := w.Write(png); return err })
	if err != nil {
		l.cfg.Logf("job %s: image %d not written: %v", j.id, n, err)
		return ""
	}
	return path
}
