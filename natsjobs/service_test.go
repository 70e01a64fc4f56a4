package natsjobs

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
)

// service starts a front end on the cluster's server.
func (c *cluster) service(cfg ServiceConfig) *Service {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := NewService(ctx, c.connect(), cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// frontEnd starts a cluster with one worker (wcfg) and a front end
// (scfg) that sees the worker.
func frontEnd(t *testing.T, wcfg WorkerConfig, scfg ServiceConfig) (*cluster, *Service) {
	t.Helper()
	c := newCluster(t)
	c.start(wcfg, nil)
	s := c.service(scfg)
	waitAdvertised(t, s)
	return c, s
}

// waitAdvertised waits until a worker is listed.
func waitAdvertised(t *testing.T, s *Service) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); len(s.Models()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no worker advertised")
		}
	}
}

// follow reads a job's events to the end (within a minute).
func follow(t *testing.T, s *Service, id string) (events []jobs.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := s.Subscribe(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for ev := range ch {
		events = append(events, ev)
	}
	if len(events) == 0 || !events[len(events)-1].Status.State.Finished() {
		t.Fatalf("job %s: the events ended unfinished: %+v", id, events)
	}
	return events
}

// TestServiceWithoutWorker: no live worker is jobs.ErrUnavailable, and
// nothing is queued.
func TestServiceWithoutWorker(t *testing.T) {
	c := newCluster(t)
	s := c.service(ServiceConfig{})
	if _, err := s.Submit(context.Background(), spec(1)); !errors.Is(err, jobs.ErrUnavailable) {
		t.Fatalf("no worker: %v", err)
	}
	s2 := c.service(ServiceConfig{Model: "some-model"})
	if _, err := s2.Submit(context.Background(), spec(1)); !errors.Is(err, jobs.ErrUnavailable) {
		t.Fatalf("no worker of the model: %v", err)
	}
	if len(s.List()) != 0 {
		t.Errorf("jobs after refusals: %v", s.List())
	}
}

// TestServiceSubmitFollow: a job submitted through the front end is
// checked by the worker (a bad one is a field error), runs, reports
// progress with previews and ends done with the pixels of a local run;
// the same id submitted again is the same job, not a second one.
func TestServiceSubmitFollow(t *testing.T) {
	c, s := frontEnd(t, WorkerConfig{PreviewEvery: time.Millisecond}, ServiceConfig{})
	bad := spec(1)
	bad.Width = 65
	var fe *jobspec.FieldError
	if _, err := s.Submit(context.Background(), bad); !errors.As(err, &fe) || fe.Field != "width" {
		t.Fatalf("width 65: %v", err)
	}
	job := spec(7)
	job.NIter = 2
	st, err := s.SubmitID(context.Background(), "job-a", job)
	if err != nil || st.ID != "job-a" || st.State != jobs.Queued && st.State != jobs.Running {
		t.Fatalf("submit: %+v %v", st, err)
	}
	again, err := s.SubmitID(context.Background(), "job-a", spec(99))
	if err != nil || again.Spec.Seed != 7 {
		t.Fatalf("the same id again: %+v %v", again, err)
	}
	events := follow(t, s, "job-a")
	previews, batches := 0, map[int]bool{}
	for _, ev := range events {
		if ev.Preview != nil {
			previews++
		}
		batches[ev.Status.Batch] = true
	}
	end := events[len(events)-1].Status
	if end.State != jobs.Done || len(end.Images) != 2 || previews == 0 || !batches[2] {
		t.Fatalf("end %+v, %d previews, batches %v", end, previews, batches)
	}
	job.Normalize()
	want := c.reference(job)
	for i := range want {
		got, err := s.Image("job-a", i)
		if err != nil || !samePixels(t, got, want[i].PNG) {
			t.Errorf("image %d: %v (or other pixels than a local run)", i, err)
		}
	}
	if _, err := s.Image("job-a", 2); !errors.Is(err, jobs.ErrNoImage) {
		t.Errorf("image 2: %v", err)
	}
	if _, err := s.Get("nope"); !errors.Is(err, jobs.ErrNotFound) {
		t.Errorf("unknown job: %v", err)
	}
	info, _ := c.js.Stream(context.Background(), c.names.Stream)
	if si, err := info.Info(context.Background()); err != nil || si.State.Msgs != 0 {
		t.Errorf("stream after the job: %+v %v", si, err)
	}
}

// TestServiceQueueCancel: with a job running and MaxQueue jobs waiting a
// job is refused as queue full; a queued job cancelled never runs, a
// running one stops within a step, and the next one runs.
func TestServiceQueueCancel(t *testing.T) {
	_, s := frontEnd(t, WorkerConfig{}, ServiceConfig{MaxQueue: 1})
	slow := spec(1)
	slow.Steps, slow.Width, slow.Height = 1000, 128, 128
	run, err := s.SubmitID(context.Background(), "slow", slow)
	if err != nil {
		t.Fatal(err)
	}
	for st, _ := s.Get(run.ID); st.State != jobs.Running || st.Step == 0; st, _ = s.Get(run.ID) {
		time.Sleep(5 * time.Millisecond)
	}
	if cur, _, _, ok := s.Current(); !ok || cur.ID != "slow" {
		t.Errorf("current: %+v %v", cur, ok)
	}
	queued, err := s.SubmitID(context.Background(), "queued", spec(2))
	if err != nil || queued.Position != 1 {
		t.Fatalf("queued: %+v %v", queued, err)
	}
	var qf *jobs.QueueFullError
	if _, err := s.Submit(context.Background(), spec(3)); !errors.As(err, &qf) || qf.RetryAfter < time.Second {
		t.Fatalf("a full queue: %v", err)
	}
	if st, err := s.Cancel("queued"); err != nil || st.State != jobs.Cancelled {
		t.Fatalf("cancel queued: %+v %v", st, err)
	}
	next, err := s.SubmitID(context.Background(), "next", spec(4))
	if err != nil {
		t.Fatalf("after the cancel the queue has room: %v", err)
	}
	start := time.Now()
	if _, err := s.Cancel("slow"); err != nil {
		t.Fatal(err)
	}
	ev := follow(t, s, "slow")
	if st := ev[len(ev)-1].Status; st.State != jobs.Cancelled || time.Since(start) > 5*time.Second {
		t.Errorf("cancelled running job: %s after %v", st.State, time.Since(start))
	}
	ev = follow(t, s, next.ID)
	if st := ev[len(ev)-1].Status; st.State != jobs.Done {
		t.Errorf("the next job: %s %s", st.State, st.Error)
	}
	if st, _ := s.Get("queued"); st.State != jobs.Cancelled || st.Started != nil {
		t.Errorf("the cancelled queued job ran: %+v", st)
	}
	if _, err := s.Cancel("next"); !errors.Is(err, jobs.ErrFinished) {
		t.Errorf("cancel a finished job: %v", err)
	}
}

// TestServiceServerRestart: the NATS server restarts while the front end
// waits for a running job: the subscription still ends with the result,
// and jobs submitted after the restart run.
func TestServiceServerRestart(t *testing.T) {
	c, s := frontEnd(t, WorkerConfig{}, ServiceConfig{})
	job := spec(11)
	job.Steps, job.Width, job.Height = 40, 128, 128
	if _, err := s.SubmitID(context.Background(), "long", job); err != nil {
		t.Fatal(err)
	}
	for st, _ := s.Get("long"); st.State != jobs.Running; st, _ = s.Get("long") {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := s.Subscribe(ctx, "long")
	if err != nil {
		t.Fatal(err)
	}
	c.srv.Restart()
	var last jobs.Event
	for ev := range ch {
		last = ev
	}
	if last.Status.State != jobs.Done || len(last.Status.Images) != 1 {
		t.Fatalf("after the restart: %+v", last.Status)
	}
	if _, err := s.Image("long", 0); err != nil {
		t.Errorf("its image: %v", err)
	}
	var st jobs.Status
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if st, err = s.SubmitID(context.Background(), "after", spec(12)); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("submit after the restart: %v", err)
	}
	if ev := follow(t, s, st.ID); ev[len(ev)-1].Status.State != jobs.Done {
		t.Errorf("a job after the restart: %+v", ev[len(ev)-1].Status)
	}
}

// TestServiceCancelDeadWorker: a job whose worker died mid-job (no ack,
// its control subject heard by nobody) is cancelled through the front
// end; the next worker that gets its redelivery ends it cancelled
// without running it, and no image is stored.
func TestServiceCancelDeadWorker(t *testing.T) {
	c := newCluster(t)
	var crashed atomic.Bool
	cw := c.start(testConfig(t.Logf), func(w *Worker) {
		w.onRunning = func(string) {
			if crashed.CompareAndSwap(false, true) {
				w.nc.Close() // as a killed process: no ack, no nak
			}
		}
	})
	s := c.service(ServiceConfig{})
	waitAdvertised(t, s)
	if _, err := s.SubmitID(context.Background(), "orphan", spec(5)); err != nil {
		t.Fatal(err)
	}
	for !crashed.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	<-cw.done
	cw.done <- nil // for the cleanup
	st, err := s.Cancel("orphan")
	if err != nil || st.State != jobs.Running {
		t.Fatalf("cancel the dead worker's job: %+v %v", st, err)
	}
	start := time.Now()
	c.start(testConfig(t.Logf), nil)
	end := follow(t, s, "orphan")
	last := end[len(end)-1].Status
	if last.State != jobs.Cancelled || len(last.Images) != 0 {
		t.Fatalf("after the redelivery: %+v", last)
	}
	t.Logf("cancelled at the redelivery %v after the second worker started", time.Since(start).Round(time.Millisecond))
	if _, err := c.res.GetInfo(context.Background(), ImageName("orphan", 0)); err == nil {
		t.Error("the cancelled job's image was stored")
	}
	if rec, _ := c.record("orphan"); rec.Attempts != 1 {
		t.Errorf("attempts %d, want 1 (the redelivery did not run it)", rec.Attempts)
	}
	c.expectEmptyStream()
}

// TestServiceTwoFrontEnds: two front ends of one deployment submitting
// the same id at once make one job (one message in the stream, run
// once); either follows, lists, fetches and cancels the other's jobs.
func TestServiceTwoFrontEnds(t *testing.T) {
	c := newCluster(t)
	c.start(testConfig(t.Logf), nil)
	a, b := c.service(ServiceConfig{}), c.service(ServiceConfig{})
	waitAdvertised(t, a)
	var wg sync.WaitGroup
	got := make([]jobs.Status, 2)
	errs := make([]error, 2)
	for i, s := range []*Service{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = s.SubmitID(context.Background(), "shared", spec(int64(20+i)))
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || got[0].Spec.Seed != got[1].Spec.Seed {
		t.Fatalf("the same id from two front ends: %v %v, seeds %d %d", errs[0], errs[1], got[0].Spec.Seed, got[1].Spec.Seed)
	}
	end := follow(t, b, "shared")
	if st := end[len(end)-1].Status; st.State != jobs.Done || len(st.Images) != 1 {
		t.Fatalf("followed by the other front end: %+v", st)
	}
	if _, err := b.Image("shared", 0); err != nil {
		t.Errorf("its image from the other front end: %v", err)
	}
	if rec, _ := c.record("shared"); rec.Attempts != 1 {
		t.Errorf("attempts %d, want 1", rec.Attempts)
	}
	stream, _ := c.js.Stream(context.Background(), c.names.Stream)
	if si, err := stream.Info(context.Background()); err != nil || si.State.LastSeq != 1 {
		t.Errorf("messages ever in the stream: %+v %v, want 1", si.State, err)
	}
	slow := spec(30)
	slow.Steps, slow.Width, slow.Height = 1000, 128, 128
	if _, err := a.SubmitID(context.Background(), "slow", slow); err != nil {
		t.Fatal(err)
	}
	for st, _ := b.Get("slow"); st.State != jobs.Running || st.Step == 0; st, _ = b.Get("slow") {
		time.Sleep(5 * time.Millisecond)
	}
	if !slices.ContainsFunc(b.List(), func(s jobs.Status) bool { return s.ID == "shared" }) {
		t.Errorf("the other front end's list: %v", b.List())
	}
	if _, err := b.Cancel("slow"); err != nil {
		t.Fatal(err)
	}
	if ev := follow(t, a, "slow"); ev[len(ev)-1].Status.State != jobs.Cancelled {
		t.Errorf("cancelled through the other front end: %+v", ev[len(ev)-1].Status)
	}
}

// TestServiceSlowReader: a subscriber that reads nothing while a job
// runs (far more events than its channel holds) still gets the final
// status, last, and then the channel closes.
func TestServiceSlowReader(t *testing.T) {
	_, s := frontEnd(t, testConfig(t.Logf), ServiceConfig{})
	job := spec(8)
	job.Steps = 40
	if _, err := s.SubmitID(context.Background(), "slow-reader", job); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := s.Subscribe(ctx, "slow-reader")
	if err != nil {
		t.Fatal(err)
	}
	for st, _ := s.Get("slow-reader"); !st.State.Finished(); st, _ = s.Get("slow-reader") {
		time.Sleep(10 * time.Millisecond)
	}
	n := 0
	var last jobs.Event
	for ev := range ch {
		n, last = n+1, ev
	}
	if last.Status.State != jobs.Done || len(last.Status.Images) != 1 || n > cap(ch) {
		t.Fatalf("%d events, the last %+v", n, last.Status)
	}
	t.Logf("%d events kept of a 40-step job, the last %s", n, last.Status.State)
}

// TestServiceResubmitUnpublished: a job recorded queued whose front end
// stopped before publishing it (no message in the stream) runs once it
// is submitted again under its id, with its recorded seed; submitting a
// published one again publishes nothing more.
func TestServiceResubmitUnpublished(t *testing.T) {
	c, s := frontEnd(t, testConfig(t.Logf), ServiceConfig{})
	job := spec(13)
	job.Normalize()
	rec := Record{Status: jobs.Status{ID: "stuck", State: jobs.Queued, Created: time.Now().UTC(), Batches: 1,
		Spec: job.Record()}, Model: ModelID("sdxl-small-base")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := updateRecord(ctx, c.state, "stuck", func(r *Record, _ bool) error { *r = rec; return nil }); err != nil {
		t.Fatal(err)
	}
	again := job
	again.Seed = -1
	st, err := s.SubmitID(context.Background(), "stuck", again)
	if err != nil || st.Spec.Seed != 13 {
		t.Fatalf("submitted again: %+v %v", st, err)
	}
	end := follow(t, s, "stuck")
	if st := end[len(end)-1].Status; st.State != jobs.Done || len(st.Images) != 1 || st.Images[0].Seed != 13 {
		t.Fatalf("the unpublished job: %+v", st)
	}
	if _, err := s.SubmitID(context.Background(), "stuck", again); err != nil {
		t.Fatal(err)
	}
	stream, _ := c.js.Stream(context.Background(), c.names.Stream)
	if si, err := stream.Info(context.Background()); err != nil || si.State.LastSeq != 1 {
		t.Errorf("messages ever in the stream: %+v %v, want 1", si.State, err)
	}
}
