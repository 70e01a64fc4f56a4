package natsjobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
)

// ServiceConfig configures a Service.
type ServiceConfig struct {
	// Names are the deployment's names (the zero Names: the default
	// prefix's).
	Names Names
	// Model is the subject token of the models jobs go to; "" takes the
	// one model the live workers advertise (an error when they advertise
	// several).
	Model string
	// MaxQueue bounds the jobs of the model waiting in the stream (not
	// counting running ones); beyond it Submit is a *jobs.QueueFullError
	// (default 16).
	MaxQueue int
	// Keep is how many finished jobs List shows (default 64); their
	// records and images stay in JetStream (the buckets' limits decide).
	Keep int
	// CheckTimeout bounds a worker's answer to a check (default 10s).
	CheckTimeout time.Duration
	// Logf logs the service's troubles (default none).
	Logf func(format string, a ...any)
}

func (c ServiceConfig) withDefaults() ServiceConfig {
	if c.Names.Stream == "" {
		c.Names, _ = NamesFor("")
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = 16
	}
	if c.Keep <= 0 {
		c.Keep = 64
	}
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = 10 * time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}

// Service is a jobs.Service over NATS: a stateless front end that checks
// jobs with a live worker, queues them in the stream and reads their
// states, progress and images from JetStream. Several Services (on
// several machines) may serve the same jobs. Close stops this front end
// only: the jobs belong to the deployment and go on.
type Service struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg ServiceConfig
	buckets
	stop context.CancelFunc
	done chan struct{}
	prog *nats.Subscription

	mu     sync.Mutex
	closed bool
	// workersSeen are the live workers as read at workersAt.
	workersSeen []WorkerInfo
	workersAt   time.Time
	// records mirror the State bucket (a watcher keeps them).
	records map[string]Record
	// live are the running jobs' latest progress messages.
	live map[string]*liveJob
	subs map[string][]*subscriber
}

// liveJob is a running job's latest progress.
type liveJob struct {
	status  jobs.Status
	preview []byte
}

// subscriber is one Subscribe call.
type subscriber struct {
	ch   chan jobs.Event
	done bool
}

var _ jobs.Service = (*Service)(nil)

// NewService sets up the deployment's names (idempotent) and starts
// following the jobs' states and progress. nc should reconnect for ever
// (nats.MaxReconnects(-1)).
func NewService(ctx context.Context, nc *nats.Conn, cfg ServiceConfig) (*Service, error) {
	if nc == nil {
		return nil, errors.New("natsjobs: NewService needs a connection")
	}
	cfg = cfg.withDefaults()
	if cfg.Model != "" && !validToken.MatchString(cfg.Model) {
		return nil, fmt.Errorf("natsjobs: model id %q: use letters, digits, '-' and '_'", cfg.Model)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsjobs: %w", err)
	}
	s := &Service{nc: nc, js: js, cfg: cfg, records: map[string]Record{}, live: map[string]*liveJob{},
		subs: map[string][]*subscriber{}, done: make(chan struct{})}
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	if s.prog, err = nc.Subscribe(cfg.Names.ProgressSubject("*"), s.onProgress); err != nil {
		return nil, fmt.Errorf("natsjobs: progress subject: %w", err)
	}
	wctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	ready := make(chan struct{})
	go s.watch(wctx, ready)
	select {
	case <-ready:
	case <-ctx.Done():
		s.Close(context.Background())
		return nil, ctx.Err()
	}
	return s, nil
}

// open sets the names up and opens the buckets.
func (s *Service) open(ctx context.Context) error {
	return retry(ctx, func(c context.Context) error {
		var err error
		s.buckets, err = openBuckets(c, s.js, s.cfg.Names)
		return err
	})
}

// Submit implements jobs.Service with a new random id.
func (s *Service) Submit(ctx context.Context, spec jobspec.Spec) (jobs.Status, error) {
	return s.SubmitID(ctx, randomHex(8), spec)
}

// SubmitID submits a job under a caller's id (letters, digits, '-' and
// '_'): the same id is the same job, so submitting again (after a lost
// answer, or a rerun of a batch) returns the job as it is instead of
// queueing it twice. The job is checked by a live worker of the model
// first: a bad job is a *jobspec.FieldError; no worker is
// jobs.ErrUnavailable.
func (s *Service) SubmitID(ctx context.Context, id string, spec jobspec.Spec) (jobs.Status, error) {
	return s.submit(ctx, id, spec, nil)
}

// Checked is a job a live worker has checked (Service.Check); submitted
// with SubmitChecked it is not checked again.
type Checked struct {
	// Spec is the normalized job, Warnings the worker's notes on it.
	Spec     jobspec.Spec
	Warnings []string
	model    string
}

// SubmitChecked is SubmitID for a job Check has accepted.
func (s *Service) SubmitChecked(ctx context.Context, id string, c Checked) (jobs.Status, error) {
	return s.submit(ctx, id, c.Spec, &c)
}

// submit is SubmitID, with the worker's check done (checked) or to do.
func (s *Service) submit(ctx context.Context, id string, spec jobspec.Spec, checked *Checked) (jobs.Status, error) {
	if !validToken.MatchString(id) {
		return jobs.Status{}, fmt.Errorf("natsjobs: job id %q: use letters, digits, '-' and '_'", id)
	}
	if s.isClosed() {
		return jobs.Status{}, jobs.ErrClosed
	}
	if rec, rev, err := loadRecord(ctx, s.state, id); err != nil {
		return jobs.Status{}, err
	} else if rev != 0 && unpublished(rec) {
		return s.republish(ctx, id, rec, spec)
	} else if rev != 0 {
		return s.withLive(rec), nil
	}
	if checked != nil {
		if err := s.checkQueue(ctx, checked.model); err != nil {
			return jobs.Status{}, err
		}
		return s.enqueue(ctx, id, checked.model, CheckReply{Spec: checked.Spec, Warnings: checked.Warnings})
	}
	model, err := s.model(ctx)
	if err != nil {
		return jobs.Status{}, err
	}
	if err := s.checkQueue(ctx, model); err != nil {
		return jobs.Status{}, err
	}
	rep, err := s.check(ctx, model, spec)
	if err != nil {
		return jobs.Status{}, err
	}
	return s.enqueue(ctx, id, model, rep)
}

// Check has a live worker of the model check spec without queueing it:
// the normalized spec and its warnings, or a *jobspec.FieldError; no
// worker is jobs.ErrUnavailable. A batch checks all its jobs this way
// before it submits the first (with SubmitChecked: once).
func (s *Service) Check(ctx context.Context, spec jobspec.Spec) (Checked, error) {
	model, err := s.model(ctx)
	if err != nil {
		return Checked{Spec: spec}, err
	}
	rep, err := s.check(ctx, model, spec)
	return Checked{Spec: rep.Spec, Warnings: rep.Warnings, model: model}, err
}

// enqueue records a checked job queued, then publishes it (deduplicated
// by its id).
func (s *Service) enqueue(ctx context.Context, id, model string, rep CheckReply) (jobs.Status, error) {
	data, err := json.Marshal(rep.Spec)
	if err != nil {
		return jobs.Status{}, err
	}
	st := jobs.Status{ID: id, State: jobs.Queued, Created: time.Now().UTC(), Batches: max(rep.Spec.NIter, 1),
		Warnings: rep.Warnings, Spec: rep.Spec.Record()}
	rec := Record{Status: st, Model: model}
	created := false
	rec, err = updateRecord(ctx, s.state, id, func(r *Record, exists bool) error {
		// Decided anew on every try: a try that lost the race to create
		// the record (another front end, the same id) is not ours.
		created = !exists
		if exists {
			return errUnchanged // submitted meanwhile by another front end
		}
		*r = rec
		return nil
	})
	if err != nil || !created {
		return s.withLive(rec), err
	}
	rec, err = s.publish(ctx, id, model, data)
	if err != nil {
		s.state.Delete(context.Background(), id)
		return jobs.Status{}, err
	}
	return s.withLive(rec), nil
}

// publish puts a recorded job's message in the stream (deduplicated by
// its id) and records its sequence.
func (s *Service) publish(ctx context.Context, id, model string, data []byte) (Record, error) {
	var ack *jetstream.PubAck
	err := retry(ctx, func(c context.Context) error {
		var err error
		ack, err = s.js.Publish(c, s.cfg.Names.JobSubject(model), data, jetstream.WithMsgID(id))
		return err
	})
	if err != nil {
		return Record{}, fmt.Errorf("natsjobs: queueing job %s: %w", id, err)
	}
	rec, err := updateRecord(ctx, s.state, id, func(r *Record, _ bool) error {
		if r.Seq != 0 || r.Status.State != jobs.Queued {
			return errUnchanged // a worker has it already
		}
		r.Seq = ack.Sequence
		return nil
	})
	if err != nil {
		// Queued all the same: the position counts it by its creation,
		// and a submit again under its id publishes it again (dropped
		// as a duplicate).
		s.cfg.Logf("natsjobs: job %s: recording its sequence: %v", id, err)
		return rec, nil
	}
	s.remember(id, rec)
	return rec, nil
}

// unpublished reports a record left queued without its message's
// sequence: its front end stopped between recording and publishing (or
// before recording the sequence), so the message may be missing.
func unpublished(rec Record) bool {
	return rec.Status.State == jobs.Queued && rec.Seq == 0 && rec.Model != ""
}

// republish publishes again the message of a job found unpublished when
// it is submitted again under its id: checked again (with the recorded
// seed), then published with its id, so a message already in the stream
// is not doubled (the stream's deduplication).
func (s *Service) republish(ctx context.Context, id string, rec Record, spec jobspec.Spec) (jobs.Status, error) {
	spec.Seed = rec.Status.Spec.Seed
	rep, err := s.check(ctx, rec.Model, spec)
	if err != nil {
		return jobs.Status{}, err
	}
	data, err := json.Marshal(rep.Spec)
	if err != nil {
		return jobs.Status{}, err
	}
	if rec, err = s.publish(ctx, id, rec.Model, data); err != nil {
		return jobs.Status{}, err
	}
	return s.withLive(rec), nil
}

// check has a live worker of model check spec.
func (s *Service) check(ctx context.Context, model string, spec jobspec.Spec) (CheckReply, error) {
	var rep CheckReply
	data, err := json.Marshal(spec)
	if err != nil {
		return rep, err
	}
	c, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout)
	defer cancel()
	m, err := s.nc.RequestWithContext(c, s.cfg.Names.CheckSubject(model), data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return rep, fmt.Errorf("%w: no worker of model %s is running", jobs.ErrUnavailable, model)
	case err != nil:
		return rep, fmt.Errorf("%w: checking the job with a worker of model %s: %v", jobs.ErrUnavailable, model, err)
	}
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return rep, fmt.Errorf("natsjobs: a worker's check answer: %w", err)
	}
	switch {
	case rep.Field != "":
		return rep, &jobspec.FieldError{Field: rep.Field, Message: rep.Error}
	case rep.Error != "":
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}

// model is the configured model, or the one model the workers advertise.
func (s *Service) model(ctx context.Context) (string, error) {
	if s.cfg.Model != "" {
		return s.cfg.Model, nil
	}
	seen := map[string]bool{}
	for _, w := range s.liveWorkers(ctx) {
		seen[w.Model] = true
	}
	switch len(seen) {
	case 0:
		return "", fmt.Errorf("%w: no worker is running", jobs.ErrUnavailable)
	case 1:
		for m := range seen {
			return m, nil
		}
	}
	return "", fmt.Errorf("%w: the workers serve several models (%d): start the front end with a model id", jobs.ErrUnavailable, len(seen))
}

// workersFresh is how long a Service reuses the live workers it read:
// every submit and every model list asks for them.
const workersFresh = time.Second

// liveWorkers is the Workers bucket's contents, read at most once every
// workersFresh while there are workers (none found is asked again at
// once: the first worker is awaited).
func (s *Service) liveWorkers(ctx context.Context) []WorkerInfo {
	s.mu.Lock()
	if len(s.workersSeen) > 0 && time.Since(s.workersAt) < workersFresh {
		defer s.mu.Unlock()
		return s.workersSeen
	}
	s.mu.Unlock()
	out := s.readWorkers(ctx)
	s.mu.Lock()
	s.workersSeen, s.workersAt = out, time.Now()
	s.mu.Unlock()
	return out
}

// readWorkers reads the Workers bucket.
func (s *Service) readWorkers(ctx context.Context) []WorkerInfo {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lister, err := s.workers.ListKeys(c)
	if err != nil {
		return nil
	}
	var out []WorkerInfo
	for k := range lister.Keys() {
		e, err := s.workers.Get(c, k)
		if err != nil {
			continue
		}
		var w WorkerInfo
		if json.Unmarshal(e.Value(), &w) == nil {
			out = append(out, w)
		}
	}
	return out
}

// Models lists the models of the live workers (of the service's model
// when it has one), each once.
func (s *Service) Models() []ModelInfo {
	return fromWorkers(s, func(w WorkerInfo) []ModelInfo { return w.Models })
}

// LoRAs lists the LoRA names the live workers (of the service's model)
// have, sorted, each once.
func (s *Service) LoRAs() []string {
	out := fromWorkers(s, func(w WorkerInfo) []string { return w.LoRAs })
	sort.Strings(out)
	return out
}

// fromWorkers gathers what pick says of each live worker of the
// service's model, each value once, in the order first seen.
func fromWorkers[T comparable](s *Service, pick func(WorkerInfo) []T) []T {
	var out []T
	seen := map[T]bool{}
	for _, w := range s.liveWorkers(context.Background()) {
		if s.cfg.Model != "" && w.Model != s.cfg.Model {
			continue
		}
		for _, v := range pick(w) {
			if !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	return out
}

func (s *Service) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
