// Package natsjobs runs generation jobs (package jobspec) on many machines
// through NATS JetStream: workers (Worker) pull jobs for the models they
// have loaded, front ends (Service, a jobs.Service) submit them and follow
// them, and the results live in JetStream, not in any one process.
//
// The names below are the whole contract between the two sides; every
// process of a deployment must use the same Names (the same Prefix).
//
//	stream   <P>_JOBS        subjects <p>.jobs.<model>   work queue, file storage;
//	                                                    one message a job, its data the
//	                                                    normalized jobspec.Spec (JSON),
//	                                                    Nats-Msg-Id = job id (deduplicated)
//	kv       <P>_STATE       key <job id>                a Record (JSON): state, attempts,
//	                                                    last error, images; written by
//	                                                    front end (queued, cancelled) and
//	                                                    workers (running, done, failed)
//	object   <P>_RESULTS     name <job id>/<n>.png       the images, with their metadata
//	kv       <P>_WORKERS     key <worker id>             a WorkerInfo, refreshed while the
//	                                                    worker lives (the bucket's TTL
//	                                                    forgets dead ones)
//	subject  <p>.check.<model>      request/reply: a worker checks a Spec (CheckReply)
//	subject  <p>.progress.<job id>  throttled jobs.Event-like progress (ProgressMsg)
//	subject  <p>.control.<job id>   "cancel" or "skip" for the worker running the job
//	consumer workers_<model>        the durable pull consumer the workers of a model
//	                                share (filter <p>.jobs.<model>)
//
// A worker answers a job by writing its Record: running (attempts
// counted), then done after every image is in the object store, failed
// (an invalid job at once; a failing one after MaxDeliveries) or
// cancelled (a "cancel" control message; the images of the finished
// batches kept). Between attempts a record is queued again with its last
// error. Every write is a compare-and-set on the record's revision, so
// that one job has one final record. A worker publishes the final status
// on the progress subject too, after the record is written.
//
// <P> is the upper-case Prefix (default SDXL), <p> its lower-case form.
package natsjobs

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
)

// DefaultPrefix names the streams, buckets and subjects of a deployment.
const DefaultPrefix = "SDXL"

// DefaultMaxDeliveries is how often a job is tried before it fails with
// its last error.
const DefaultMaxDeliveries = 3

// Names are the JetStream names of one deployment.
type Names struct {
	Stream, State, Results, Workers string
	subj                            string
}

// NamesFor returns the names under prefix ("" is DefaultPrefix). A
// prefix is letters, digits, '-' and '_'.
func NamesFor(prefix string) (Names, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !validToken.MatchString(prefix) {
		return Names{}, fmt.Errorf("natsjobs: prefix %q: use letters, digits, '-' and '_'", prefix)
	}
	p := strings.ToUpper(prefix)
	return Names{Stream: p + "_JOBS", State: p + "_STATE", Results: p + "_RESULTS", Workers: p + "_WORKERS",
		subj: strings.ToLower(prefix)}, nil
}

var validToken = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ModelID makes a subject token of a model name: letters, digits, '-' and
// '_' kept, anything else '_'.
func ModelID(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// JobSubject is the subject of a job for model.
func (n Names) JobSubject(model string) string { return n.subj + ".jobs." + model }

// JobsFilter is the subject filter of every job.
func (n Names) JobsFilter() string { return n.subj + ".jobs.>" }

// CheckSubject is the request subject of model's checks.
func (n Names) CheckSubject(model string) string { return n.subj + ".check." + model }

// ProgressSubject is the progress subject of a job.
func (n Names) ProgressSubject(id string) string { return n.subj + ".progress." + id }

// ControlSubject carries "cancel" and "skip" to the worker of a job.
func (n Names) ControlSubject(id string) string { return n.subj + ".control." + id }

// Consumer is the durable consumer shared by the workers of model.
func (n Names) Consumer(model string) string { return "workers_" + model }

// ControlFilter is the subject filter of every job's control messages.
func (n Names) ControlFilter() string { return n.subj + ".control.*" }

// ImageName is the object name of image i of a job.
func ImageName(id string, i int) string { return fmt.Sprintf("%s/%d.png", id, i) }

// Record is a job's state in the State bucket. Status is what the API
// shows (jobs.Status; Images' URLs point at the front end's paths).
type Record struct {
	Status jobs.Status `json:"status"`
	// Model is the subject token of the job's models.
	Model string `json:"model"`
	// Attempts counts deliveries to workers; LastError is the error of the
	// latest failed attempt.
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
	// Worker is the worker that runs (or ran) the job.
	Worker string `json:"worker,omitempty"`
	// Seq is the job message's stream sequence (for queue positions).
	Seq uint64 `json:"seq,omitempty"`
	// CancelRequested is set by a front end cancelling a running job,
	// besides its "cancel" control message: a control message reaches only
	// a live worker, so a job whose worker died (or that a worker hands
	// back) ends cancelled at its next delivery instead of running again.
	CancelRequested bool `json:"cancel_requested,omitempty"`
}

// CheckReply answers a check request, whose data is a job as JSON (a
// jobspec.Spec; read as DecodeSpec reads job messages: absent fields take
// the native defaults, unknown ones are an error). Any worker of the
// model answers (a queue group); no answer means no live worker.
type CheckReply struct {
	// Spec is the normalized job (seed drawn) when it is valid.
	Spec     jobspec.Spec `json:"spec"`
	Warnings []string     `json:"warnings,omitempty"`
	// Field and Error describe a bad job (a *jobspec.FieldError), Error
	// alone any other failure.
	Field string `json:"field,omitempty"`
	Error string `json:"error,omitempty"`
}

// ProgressMsg is one progress message of a running job.
type ProgressMsg struct {
	Status jobs.Status `json:"status"`
	// Preview is a PNG of the latent preview, when this step has one.
	Preview []byte `json:"preview,omitempty"`
}

// WorkerInfo describes a live worker in the Workers bucket.
type WorkerInfo struct {
	ID     string `json:"id"`
	Model  string `json:"model"`
	Host   string `json:"host"`
	Device string `json:"device"`
	// Models are the loaded models as the API lists them.
	Models []ModelInfo `json:"models"`
	// LoRAs are the names of the LoRAs of the worker's LoRA folder.
	LoRAs []string `json:"loras,omitempty"`
	// Job is the running job's id, "" when idle.
	Job  string    `json:"job,omitempty"`
	Seen time.Time `json:"seen"`
}

// ModelInfo is one model of a worker (server.Model's fields).
type ModelInfo struct {
	Role   string `json:"role"`
	Name   string `json:"name"`
	File   string `json:"file"`
	Hash   string `json:"hash"`
	SHA256 string `json:"sha256"`
}

// WorkerTTL is how long a worker stays listed without a refresh.
const WorkerTTL = 30 * time.Second

// buckets are a deployment's buckets, as workers and front ends use them.
type buckets struct {
	state   jetstream.KeyValue
	workers jetstream.KeyValue
	results jetstream.ObjectStore
}

// openBuckets sets n up (Setup) and opens its buckets.
func openBuckets(ctx context.Context, js jetstream.JetStream, n Names) (buckets, error) {
	var b buckets
	if err := Setup(ctx, js, n); err != nil {
		return b, err
	}
	var err error
	if b.state, err = js.KeyValue(ctx, n.State); err != nil {
		return b, err
	}
	if b.workers, err = js.KeyValue(ctx, n.Workers); err != nil {
		return b, err
	}
	b.results, err = js.ObjectStore(ctx, n.Results)
	return b, err
}

// Setup creates (or updates) the stream and buckets of n: idempotent, so
// every worker and front end calls it at start.
func Setup(ctx context.Context, js jetstream.JetStream, n Names) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: n.Stream, Subjects: []string{n.JobsFilter()}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Duplicates: 24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("natsjobs: stream %s: %w", n.Stream, err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: n.State, History: 1}); err != nil {
		return fmt.Errorf("natsjobs: bucket %s: %w", n.State, err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: n.Workers, TTL: WorkerTTL}); err != nil {
		return fmt.Errorf("natsjobs: bucket %s: %w", n.Workers, err)
	}
	if _, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: n.Results}); err != nil {
		return fmt.Errorf("natsjobs: object store %s: %w", n.Results, err)
	}
	return nil
}
