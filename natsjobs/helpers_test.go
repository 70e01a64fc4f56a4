package natsjobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdxl-go/sdxl/internal/natstest"
	"github.com/sdxl-go/sdxl/internal/testengine"
	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
	"github.com/sdxl-go/sdxl/sdxl"
)

// cluster is a test deployment: one in-process server, one engine over
// the bundled model shared by every worker's runner (the engine queues
// concurrent calls, so the workers' runs take turns: correct, not
// parallel).
type cluster struct {
	t     testing.TB
	srv   *natstest.Server
	names Names
	eng   *sdxl.Engine
	nc    *nats.Conn // the test's own ("front end") connection
	js    jetstream.JetStream
	state jetstream.KeyValue
	res   jetstream.ObjectStore
	ref   *jobs.Runner // for reference runs
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	c := &cluster{t: t, srv: natstest.Start(t), eng: testengine.Bundled(t, sdxl.Options{MemoryBudget: -1})}
	c.names, _ = NamesFor("")
	c.nc = c.connect()
	c.js, _ = jetstream.New(c.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Setup(ctx, c.js, c.names); err != nil {
		t.Fatal(err)
	}
	var err error
	if c.state, err = c.js.KeyValue(ctx, c.names.State); err != nil {
		t.Fatal(err)
	}
	if c.res, err = c.js.ObjectStore(ctx, c.names.Results); err != nil {
		t.Fatal(err)
	}
	c.ref = c.runner()
	return c
}

func (c *cluster) connect() *nats.Conn {
	c.t.Helper()
	nc, err := nats.Connect(c.srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

func (c *cluster) runner() *jobs.Runner {
	return jobs.NewRunner(context.Background(), c.eng, jobs.RunnerOptions{Device: "cpu", DType: "f32",
		Version: "sdxl-run test", BaseName: "sdxl-small-base"})
}

// testConfig is a worker config with short waits.
func testConfig(logf func(string, ...any)) WorkerConfig {
	return WorkerConfig{AckWait: time.Second, RetryDelay: 50 * time.Millisecond, PreviewEvery: time.Millisecond,
		DrainTimeout: 20 * time.Second, Logf: logf}
}

// worker is a started worker with its own connection.
type worker struct {
	*Worker
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

// start starts a worker (its own connection and runner); edit may set
// its test hooks before it runs.
func (c *cluster) start(cfg WorkerConfig, edit func(*Worker)) *worker {
	c.t.Helper()
	nc := c.connect()
	w, err := NewWorker(nc, c.runner(), cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	if edit != nil {
		edit(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tw := &worker{Worker: w, nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { tw.done <- w.Run(ctx) }()
	c.t.Cleanup(func() { cancel(); <-tw.done })
	return tw
}

// spec is a tiny job: 2 steps at 64x64.
func spec(seed int64) jobspec.Spec {
	s := jobspec.New(jobspec.Native)
	s.Prompt, s.Width, s.Height, s.Steps, s.Seed = fmt.Sprintf("a red cube %d", seed), 64, 64, 2, seed
	return s
}

// submit queues a job as a front end does: a queued record, then the
// message (its id the message id).
func (c *cluster) submit(id string, s jobspec.Spec) { c.t.Helper(); c.submitAs(id, s, jobs.Queued) }

// submitAs queues a job whose record says st.
func (c *cluster) submitAs(id string, s jobspec.Spec, st jobs.State) {
	c.t.Helper()
	s.Normalize()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := Record{Status: jobs.Status{ID: id, State: st, Created: time.Now().UTC(), Batches: s.NIter, Spec: s.Record()},
		Model: ModelID("sdxl-small-base")}
	b, _ := json.Marshal(rec)
	if _, err := c.state.Create(ctx, id, b); err != nil {
		c.t.Fatal(err)
	}
	data, _ := json.Marshal(s)
	if _, err := c.js.Publish(ctx, c.names.JobSubject(rec.Model), data, jetstream.WithMsgID(id)); err != nil {
		c.t.Fatal(err)
	}
}

// record reads a job's record (retrying while the server restarts).
func (c *cluster) record(id string) (Record, error) {
	var rec Record
	err := retry(context.Background(), func(ctx context.Context) error {
		e, err := c.state.Get(ctx, id)
		if err != nil {
			return err
		}
		return json.Unmarshal(e.Value(), &rec)
	})
	return rec, err
}

// wait waits until every job has a final record.
func (c *cluster) wait(ids []string, within time.Duration) map[string]Record {
	c.t.Helper()
	deadline := time.Now().Add(within)
	out := map[string]Record{}
	for _, id := range ids {
		for {
			rec, err := c.record(id)
			if err == nil && rec.Status.State.Finished() {
				out[id] = rec
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("job %s not finished within %v: %+v (%v)", id, within, rec, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return out
}

// reference runs a job on a local runner.
func (c *cluster) reference(s jobspec.Spec) []jobs.Output {
	c.t.Helper()
	p, err := c.ref.Prepare(s)
	if err != nil {
		c.t.Fatal(err)
	}
	out, err := c.ref.Run(context.Background(), p, jobs.Hooks{})
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// checkResult compares a done job's record and stored images with a
// local run: the same pixels and infotext, and no extra object.
func (c *cluster) checkResult(id string, rec Record, want []jobs.Output) {
	c.t.Helper()
	if rec.Status.State != jobs.Done || len(rec.Status.Images) != len(want) {
		c.t.Fatalf("job %s: %s with %d images (want done with %d): %q", id, rec.Status.State, len(rec.Status.Images), len(want), rec.Status.Error)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, w := range want {
		im := rec.Status.Images[i]
		if im.URL != jobs.ImageURL(id, i) || im.Seed != w.Seed || im.Infotext != w.Infotext {
			c.t.Errorf("job %s image %d: %+v, want seed %d infotext %q", id, i, im, w.Seed, w.Infotext)
		}
		b, err := c.res.GetBytes(ctx, ImageName(id, i))
		if err != nil {
			c.t.Fatalf("job %s image %d: %v", id, i, err)
		}
		if !samePixels(c.t, b, w.PNG) {
			c.t.Errorf("job %s image %d: pixels differ from the local run", id, i)
		}
	}
	if _, err := c.res.GetInfo(ctx, ImageName(id, len(want))); !errors.Is(err, jetstream.ErrObjectNotFound) {
		c.t.Errorf("job %s: an extra object %s (%v)", id, ImageName(id, len(want)), err)
	}
}

func samePixels(t testing.TB, a, b []byte) bool {
	t.Helper()
	ia, err := png.Decode(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	ib, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if ia.Bounds() != ib.Bounds() {
		return false
	}
	r := ia.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if ia.At(x, y) != ib.At(x, y) {
				return false
			}
		}
	}
	return true
}

// logs collects the workers' log lines.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, a...))
}
