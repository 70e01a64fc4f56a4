package natsjobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
)

// TestWorkersSixtyJobsAndRestart runs 60 jobs on 3 workers and restarts
// the NATS server mid-run: every job ends done exactly once (one "done"
// log line, its images and no more), with the pixels and infotext of a
// local run of the same seed.
func TestWorkersSixtyJobsAndRestart(t *testing.T) {
	n := 60
	if testing.Short() {
		n = 15
	}
	c := newCluster(t)
	var lg logs
	for range 3 {
		c.start(testConfig(lg.logf), nil)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("job%02d", i)
		c.submit(ids[i], spec(int64(100+i)))
	}
	start := time.Now()
	c.wait(ids[:n/4], time.Minute)
	c.srv.Restart()
	t.Logf("restarted the server after %v", time.Since(start))
	recs := c.wait(ids, 2*time.Minute)
	t.Logf("%d jobs on 3 workers in %v", n, time.Since(start))
	workers := map[string]int{}
	for i, id := range ids {
		c.checkResult(id, recs[id], c.reference(spec(int64(100+i))))
		workers[recs[id].Worker]++
		if k := countLines(&lg, "job "+id+": done in"); k != 1 {
			t.Errorf("job %s: done %d times", id, k)
		}
	}
	t.Logf("jobs per worker: %v", workers)
	c.expectEmptyStream()
}

// TestWorkerCrashRedelivers kills a worker mid-job (its connection
// closed, no acknowledgement): after AckWait the job goes to another
// worker and ends done, on its second attempt.
func TestWorkerCrashRedelivers(t *testing.T) {
	c := newCluster(t)
	var crashed atomic.Bool
	var victim *Worker
	cw := c.start(testConfig(t.Logf), func(w *Worker) {
		victim = w
		w.onRunning = func(id string) {
			if crashed.CompareAndSwap(false, true) {
				w.nc.Close() // as a killed process: no ack, no nak
			}
		}
	})
	c.submit("j", spec(42))
	for !crashed.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-cw.done:
		if !errors.Is(err, nats.ErrConnectionClosed) {
			t.Errorf("the crashed worker's Run: %v", err)
		}
		cw.done <- err // for the cleanup
	case <-time.After(20 * time.Second):
		t.Fatal("the crashed worker did not stop")
	}
	if r, _ := c.record("j"); r.Status.State != jobs.Running || r.Worker != victim.ID() {
		t.Fatalf("after the crash: %+v", r)
	}
	other := c.start(testConfig(t.Logf), nil)
	r := c.wait([]string{"j"}, 30*time.Second)["j"]
	c.checkResult("j", r, c.reference(spec(42)))
	if r.Attempts != 2 || r.Worker != other.ID() {
		t.Errorf("attempts %d by %s, want 2 by %s", r.Attempts, r.Worker, other.ID())
	}
	c.expectEmptyStream()
}

// TestWorkerPoisonJob fails a job whose every attempt fails: after
// MaxDeliveries attempts, with its error; the other jobs run.
func TestWorkerPoisonJob(t *testing.T) {
	c := newCluster(t)
	var tries atomic.Int32
	poison := func(s jobspec.Spec) error {
		if strings.Contains(s.Prompt, "poison") {
			tries.Add(1)
			return errors.New("the GPU fell over")
		}
		return nil
	}
	for range 2 {
		c.start(testConfig(t.Logf), func(w *Worker) { w.failRun = poison })
	}
	bad := spec(3)
	bad.Prompt = "poison"
	c.submit("poison", bad)
	c.submit("fine", spec(4))
	recs := c.wait([]string{"poison", "fine"}, 30*time.Second)
	r := recs["poison"]
	if r.Status.State != jobs.Failed || r.Attempts != DefaultMaxDeliveries || tries.Load() != DefaultMaxDeliveries ||
		!strings.Contains(r.Status.Error, "the GPU fell over") || r.LastError != "the GPU fell over" {
		t.Errorf("poison job after %d tries: %+v", tries.Load(), r)
	}
	c.checkResult("fine", recs["fine"], c.reference(spec(4)))
	c.expectEmptyStream()
}

// slowSpec takes a second or two on the bundled model.
func slowSpec(seed int64) jobspec.Spec {
	s := spec(seed)
	s.Steps = 60
	return s
}

// TestWorkerDrainFinishesJob stops a worker mid-job: it finishes the job
// (stored, done, acknowledged) and then Run returns.
func TestWorkerDrainFinishesJob(t *testing.T) {
	c := newCluster(t)
	running := make(chan struct{}, 1)
	w := c.start(testConfig(t.Logf), func(w *Worker) { w.onRunning = func(string) { running <- struct{}{} } })
	c.submit("j", slowSpec(8))
	<-running
	w.cancel()
	select {
	case err := <-w.done:
		w.done <- err
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the draining worker did not stop")
	}
	r, err := c.record("j")
	if err != nil {
		t.Fatal(err)
	}
	c.checkResult("j", r, c.reference(slowSpec(8)))
	c.expectEmptyStream()
}

// TestWorkerDrainTimeoutGivesBack stops a worker whose job outlasts the
// drain: the job goes back to the queue, its attempt not counted, and
// another worker runs it.
func TestWorkerDrainTimeoutGivesBack(t *testing.T) {
	c := newCluster(t)
	running := make(chan struct{}, 1)
	cfg := testConfig(t.Logf)
	cfg.DrainTimeout = 10 * time.Millisecond
	w := c.start(cfg, func(w *Worker) { w.onRunning = func(string) { running <- struct{}{} } })
	c.submit("j", slowSpec(9))
	<-running
	w.cancel()
	if err := <-w.done; err != nil {
		t.Fatal(err)
	}
	w.done <- nil
	if r, _ := c.record("j"); r.Status.State != jobs.Queued || r.Attempts != 0 {
		t.Fatalf("after the drain: %+v", r)
	}
	other := c.start(testConfig(t.Logf), nil)
	r := c.wait([]string{"j"}, time.Minute)["j"]
	c.checkResult("j", r, c.reference(slowSpec(9)))
	if r.Attempts != 1 || r.Worker != other.ID() {
		t.Errorf("attempts %d by %s", r.Attempts, r.Worker)
	}
}

// TestWorkerCancelAndSkip obeys control messages: skip ends the running
// batch (the job goes on), cancel stops the job (cancelled, keeping the
// finished batches' images).
func TestWorkerCancelAndSkip(t *testing.T) {
	c := newCluster(t)
	running := make(chan string, 2)
	c.start(testConfig(t.Logf), func(w *Worker) { w.onRunning = func(id string) { running <- id } })
	s := slowSpec(20)
	s.NIter = 2
	c.submit("skip", s)
	<-running
	time.Sleep(100 * time.Millisecond)
	c.control("skip", "skip")
	r := c.wait([]string{"skip"}, time.Minute)["skip"]
	if r.Status.State != jobs.Done || len(r.Status.Images) != 1 || r.Status.Images[0].Seed != 21 {
		t.Errorf("skipped job: %s with %d images", r.Status.State, len(r.Status.Images))
	}
	s.Steps = 1000
	c.submit("cancel", s)
	<-running
	time.Sleep(100 * time.Millisecond)
	c.control("cancel", "cancel")
	r = c.wait([]string{"cancel"}, time.Minute)["cancel"]
	if r.Status.State != jobs.Cancelled || len(r.Status.Images) != 0 || r.Status.Finished == nil {
		t.Errorf("cancelled job: %+v", r)
	}
	c.expectEmptyStream()
}

func (c *cluster) control(id, what string) {
	c.t.Helper()
	if err := c.nc.Publish(c.names.ControlSubject(id), []byte(what)); err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.nc.FlushWithContext(ctx)
}

// TestWorkerSettledJobs acknowledges without running a delivered job
// whose record is already final: done (a redelivery after a lost ack) or
// cancelled while queued.
func TestWorkerSettledJobs(t *testing.T) {
	c := newCluster(t)
	var lg logs
	c.start(testConfig(lg.logf), nil)
	for _, st := range []jobs.State{jobs.Done, jobs.Cancelled} {
		id := string(st)
		c.submitAs(id, spec(1), st)
	}
	c.expectEmptyStream()
	for _, st := range []jobs.State{jobs.Done, jobs.Cancelled} {
		id := string(st)
		if r, _ := c.record(id); r.Status.State != st || r.Attempts != 0 {
			t.Errorf("job %s: %+v", id, r)
		}
		if countLines(&lg, "job "+id+": already "+id+": acknowledged") != 1 {
			t.Errorf("job %s: logs %q", id, lg.lines)
		}
	}
	if k := countLines(&lg, "done in"); k != 0 {
		t.Errorf("%d jobs ran", k)
	}
}

// TestWorkersRaceOneDone stalls a worker past AckWait (no in-progress
// acks): the job goes to a second worker while the first still holds it;
// both finish, and only one writes done.
func TestWorkersRaceOneDone(t *testing.T) {
	c := newCluster(t)
	var lg logs
	var stalled atomic.Bool
	slow := c.start(testConfig(lg.logf), func(w *Worker) {
		w.onRunning = func(string) {
			if stalled.CompareAndSwap(false, true) {
				time.Sleep(2500 * time.Millisecond) // AckWait is 1s
			}
		}
	})
	c.submit("j", spec(77))
	for !stalled.Load() {
		time.Sleep(10 * time.Millisecond)
	}
	fast := c.start(testConfig(lg.logf), nil)
	r := c.wait([]string{"j"}, 30*time.Second)["j"]
	c.checkResult("j", r, c.reference(spec(77)))
	deadline := time.Now().Add(20 * time.Second)
	for countLines(&lg, "job j: already done by "+fast.ID()+": this result dropped") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled worker %s did not drop its result: %q", slow.ID(), lg.lines)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.Worker != fast.ID() || r.Attempts != 2 || countLines(&lg, "job j: done in") != 1 {
		t.Errorf("record %+v; logs %q", r, lg.lines)
	}
	c.expectEmptyStream()
}

// TestWorkerRestartMidJob restarts the NATS server while a job runs: the
// worker reconnects, stores the result, records it and acknowledges it;
// the job is done once.
func TestWorkerRestartMidJob(t *testing.T) {
	c := newCluster(t)
	var lg logs
	running := make(chan struct{}, 1)
	c.start(testConfig(lg.logf), func(w *Worker) { w.onRunning = func(string) { running <- struct{}{} } })
	c.submit("j", slowSpec(31))
	<-running
	time.Sleep(200 * time.Millisecond)
	c.srv.Restart()
	r := c.wait([]string{"j"}, time.Minute)["j"]
	c.checkResult("j", r, c.reference(slowSpec(31)))
	c.expectEmptyStream()
	if k := countLines(&lg, "job j: done in"); k != 1 || r.Attempts != 1 {
		t.Errorf("done %d times, %d attempts: %q", k, r.Attempts, lg.lines)
	}
}
