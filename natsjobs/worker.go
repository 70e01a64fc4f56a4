package natsjobs

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
)

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	// Names are the deployment's names (NamesFor); the zero Names are
	// the default prefix's.
	Names Names
	// Model is the subject token of the jobs the worker takes; default
	// ModelID of the runner's base model name (its refiner's without one).
	Model string
	// ID names the worker in WorkerInfo and in the records; default
	// host-pid-random.
	ID string
	// MaxDeliveries is how often a job is tried before it fails with its
	// last error (default DefaultMaxDeliveries).
	MaxDeliveries int
	// AckWait is how long a delivered job stays with a silent worker
	// before it is delivered again (default 30s); a worker working on it
	// says so every AckWait/3.
	AckWait time.Duration
	// PreviewEvery is the least time between two preview pictures of a
	// job (default 250ms); the last step of a stage always has one.
	PreviewEvery time.Duration
	// RetryDelay is how long a failed job waits before its next delivery
	// (default 1s).
	RetryDelay time.Duration
	// DrainTimeout is how long Run, once its context is done, lets the
	// running job finish before it stops the job and gives it back
	// (default DefaultDrainTimeout).
	DrainTimeout time.Duration
	// Device describes the compute device in WorkerInfo.
	Device string
	// Models lists the loaded models for WorkerInfo (the API's model
	// list); default the runner's models by file name.
	Models func() []ModelInfo
	// LoRAs lists the names of the worker's LoRA folder for WorkerInfo
	// (the API's LoRA list); nil: none.
	LoRAs func() []string
	// Logf logs one line a job and the worker's troubles (default none).
	Logf func(format string, a ...any)
}

// DefaultDrainTimeout is how long a stopping worker lets its job finish.
const DefaultDrainTimeout = 10 * time.Second

// opTimeout bounds the NATS operations around one job (reading and
// writing its record, storing its images, acknowledging it), retried
// meanwhile: long enough to ride out a server restart.
const opTimeout = 2 * time.Minute

// Worker takes the jobs of one model from the stream and runs them on a
// jobs.Runner, one at a time; it answers the model's check requests.
type Worker struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	r    *jobs.Runner
	cfg  WorkerConfig
	host string
	buckets
	cons jetstream.Consumer

	mu  sync.Mutex
	job string // the running job's id
	// advertised is signalled when the running job changes.
	advertised chan struct{}

	// Test hooks: failRun makes an attempt fail before it runs;
	// onRunning is called when a job is marked running.
	failRun   func(spec jobspec.Spec) error
	onRunning func(id string)
}

// NewWorker returns a worker of r's model on nc. The connection should
// reconnect for ever (nats.MaxReconnects(-1)) to survive server restarts.
func NewWorker(nc *nats.Conn, r *jobs.Runner, cfg WorkerConfig) (*Worker, error) {
	if nc == nil || r == nil {
		return nil, errors.New("natsjobs: NewWorker needs a connection and a runner")
	}
	if cfg.Names.Stream == "" {
		cfg.Names, _ = NamesFor("")
	}
	if cfg.Model == "" {
		cfg.Model = ModelID(baseName(r))
	}
	if !validToken.MatchString(cfg.Model) {
		return nil, fmt.Errorf("natsjobs: model id %q: use letters, digits, '-' and '_'", cfg.Model)
	}
	host, _ := os.Hostname()
	if cfg.ID == "" {
		cfg.ID = fmt.Sprintf("%s-%d-%s", ModelID(host), os.Getpid(), randomHex(3))
	}
	cfg = cfg.withDefaults(r)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsjobs: %w", err)
	}
	return &Worker{nc: nc, js: js, r: r, cfg: cfg, host: host, advertised: make(chan struct{}, 1)}, nil
}

func (c WorkerConfig) withDefaults(r *jobs.Runner) WorkerConfig {
	if c.MaxDeliveries <= 0 {
		c.MaxDeliveries = DefaultMaxDeliveries
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.PreviewEvery <= 0 {
		c.PreviewEvery = 250 * time.Millisecond
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Models == nil {
		c.Models = func() []ModelInfo { return runnerModels(r) }
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}

// baseName is the name of the runner's base model (or of its refiner).
func baseName(r *jobs.Runner) string {
	ms := r.Models().Models
	for _, m := range ms {
		if m.Role == "base" {
			return m.Name
		}
	}
	if len(ms) > 0 {
		return ms[0].Name
	}
	return "model"
}

// runnerModels describes the runner's models with their file names.
func runnerModels(r *jobs.Runner) []ModelInfo {
	h := r.Models()
	sums := map[string]string{}
	for _, f := range h.Files {
		sums[f.Path] = f.SHA256
	}
	out := make([]ModelInfo, 0, len(h.Models))
	for _, m := range h.Models {
		out = append(out, ModelInfo{Role: m.Role, Name: m.Name, File: filepath.Base(m.Path), Hash: m.Hash, SHA256: sums[m.HashOf]})
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := crand.Read(b); err != nil {
		return fmt.Sprintf("%x", time.Now().UnixNano())
	}
	return hex.EncodeToString(b)
}

// ID is the worker's id.
func (w *Worker) ID() string { return w.cfg.ID }

// Model is the subject token of the worker's jobs.
func (w *Worker) Model() string { return w.cfg.Model }

// Run serves until ctx is done, then drains: it stops taking jobs and
// lets the running one finish (stored and acknowledged) within
// DrainTimeout, or stops it and gives it back to the queue. It returns
// nil after a drain, an error when it cannot start or the connection is
// closed.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.open(ctx); err != nil {
		return err
	}
	sub, err := w.nc.QueueSubscribe(w.cfg.Names.CheckSubject(w.cfg.Model), "workers", w.check)
	if err != nil {
		return fmt.Errorf("natsjobs: check subject: %w", err)
	}
	defer sub.Unsubscribe()
	infoCtx, stopInfo := context.WithCancel(context.Background())
	infoDone := make(chan struct{})
	go func() { defer close(infoDone); w.advertise(infoCtx) }()
	defer func() { stopInfo(); <-infoDone }()
	return w.pull(ctx)
}

// open sets the names up and makes the model's consumer, retrying while
// the server is unreachable.
func (w *Worker) open(ctx context.Context) error {
	return retry(ctx, func(c context.Context) error {
		var err error
		if w.buckets, err = openBuckets(c, w.js, w.cfg.Names); err != nil {
			return err
		}
		return w.consumer(c)
	})
}

// consumer creates (or updates) the model's durable pull consumer.
// Deliveries are not limited: the worker counts attempts in the record.
func (w *Worker) consumer(ctx context.Context) error {
	c, err := w.js.CreateOrUpdateConsumer(ctx, w.cfg.Names.Stream, jetstream.ConsumerConfig{
		Durable: w.cfg.Names.Consumer(w.cfg.Model), FilterSubject: w.cfg.Names.JobSubject(w.cfg.Model),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: w.cfg.AckWait, MaxDeliver: -1,
	})
	if err != nil {
		return fmt.Errorf("natsjobs: consumer: %w", err)
	}
	w.cons = c
	return nil
}

// pull takes jobs one at a time until ctx is done.
func (w *Worker) pull(ctx context.Context) error {
	for ctx.Err() == nil {
		if w.nc.IsClosed() {
			return fmt.Errorf("natsjobs: worker %s: %w", w.cfg.ID, nats.ErrConnectionClosed)
		}
		batch, err := w.cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err == nil {
			for msg := range batch.Messages() {
				if ctx.Err() != nil {
					msg.Nak() // taken while stopping: straight back to the queue
					continue
				}
				w.handle(ctx, msg)
			}
			err = batch.Error()
		}
		if err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			w.pause(ctx, err)
		}
	}
	return nil
}

// pause waits a moment after a failed fetch (the server restarting, the
// consumer gone), making the consumer again when it is missing.
func (w *Worker) pause(ctx context.Context, err error) {
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := w.consumer(c); err != nil {
			w.cfg.Logf("worker %s: %v", w.cfg.ID, err)
		}
		cancel()
	}
	select {
	case <-ctx.Done():
	case <-time.After(200 * time.Millisecond):
	}
}

// check answers a check request: data a jobspec.Spec as JSON.
func (w *Worker) check(m *nats.Msg) {
	var rep CheckReply
	spec, err := DecodeSpec(m.Data)
	var p *jobs.Prepared
	if err == nil {
		p, err = w.r.Prepare(spec)
	}
	var fe *jobspec.FieldError
	switch {
	case errors.As(err, &fe):
		rep.Field, rep.Error = fe.Field, fe.Message
	case err != nil:
		rep.Error = err.Error()
	default:
		rep.Spec, rep.Warnings = p.Spec, p.Warnings
	}
	b, err := json.Marshal(rep)
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil {
		w.cfg.Logf("worker %s: check reply: %v", w.cfg.ID, err)
	}
}

// DecodeSpec reads a job's JSON (a job message, a check request): absent
// fields take the native form's defaults; unknown fields are an error.
func DecodeSpec(data []byte) (jobspec.Spec, error) {
	s := jobspec.New(jobspec.Native)
	if err := strictUnmarshal(data, &s); err != nil {
		return jobspec.Spec{}, fmt.Errorf("the job is not a JSON job: %w", err)
	}
	return s, nil
}

// setJob records the running job ("" when idle) and has it advertised.
func (w *Worker) setJob(id string) {
	w.mu.Lock()
	w.job = id
	w.mu.Unlock()
	select {
	case w.advertised <- struct{}{}:
	default:
	}
}

// advertise keeps the worker's WorkerInfo fresh until ctx is done, then
// removes it.
func (w *Worker) advertise(ctx context.Context) {
	t := time.NewTicker(WorkerTTL / 3)
	defer t.Stop()
	for {
		w.mu.Lock()
		info := WorkerInfo{ID: w.cfg.ID, Model: w.cfg.Model, Host: w.host, Device: w.cfg.Device,
			Models: w.cfg.Models(), Job: w.job, Seen: time.Now().UTC()}
		if w.cfg.LoRAs != nil {
			info.LoRAs = w.cfg.LoRAs()
		}
		w.mu.Unlock()
		if b, err := json.Marshal(info); err == nil {
			c, cancel := context.WithTimeout(ctx, 5*time.Second)
			w.workers.Put(c, w.cfg.ID, b) // a miss is mended at the next tick
			cancel()
		}
		select {
		case <-ctx.Done():
			c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			w.workers.Delete(c, w.cfg.ID)
			cancel()
			return
		case <-t.C:
		case <-w.advertised:
		}
	}
}
