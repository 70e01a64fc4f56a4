package natsjobs

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdxl-go/sdxl/jobs"
)

// TestWorkerRunsJobs runs jobs on one worker: each done once with the
// pixels and infotext of a local run, with progress and previews on the
// job's subject; a job published without a record gets one.
func TestWorkerRunsJobs(t *testing.T) {
	c := newCluster(t)
	var lg logs
	progress := make(chan ProgressMsg, 1024)
	sub, err := c.nc.Subscribe(c.names.ProgressSubject("*"), func(m *nats.Msg) {
		var p ProgressMsg
		if json.Unmarshal(m.Data, &p) == nil {
			select {
			case progress <- p:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	w := c.start(testConfig(lg.logf), nil)
	if w.Model() != "sdxl-small-base" {
		t.Fatalf("model id %q", w.Model())
	}
	big := spec(11)
	big.BatchSize, big.NIter = 2, 2
	c.submit("a", spec(5))
	c.submit("b", big)
	// Published directly, without a record: the worker makes one.
	raw, _ := json.Marshal(spec(6))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.js.Publish(ctx, c.names.JobSubject("sdxl-small-base"), raw, jetstream.WithMsgID("c")); err != nil {
		t.Fatal(err)
	}
	recs := c.wait([]string{"a", "b", "c"}, 30*time.Second)
	c.checkResult("a", recs["a"], c.reference(spec(5)))
	c.checkResult("b", recs["b"], c.reference(big))
	c.checkResult("c", recs["c"], c.reference(spec(6)))
	for id, r := range recs {
		if r.Attempts != 1 || r.Worker != w.ID() || r.Status.Progress != 1 || r.Status.Started == nil || r.Status.Finished == nil {
			t.Errorf("job %s: %+v", id, r)
		}
	}
	if got := recs["b"].Status.Images[2].Seed; got != 13 {
		t.Errorf("job b, image 2: seed %d, want 13", got)
	}
	var previews, finals int
	for len(progress) > 0 {
		p := <-progress
		if len(p.Preview) > 0 {
			previews++
		}
		if p.Status.State == jobs.Done {
			finals++
		}
	}
	if previews < 3 || finals != 3 {
		t.Errorf("%d progress messages with previews, %d final ones (want ≥3 and 3)", previews, finals)
	}
	if n := countLines(&lg, "done in"); n != 3 {
		t.Errorf("%d 'done' log lines, want 3: %q", n, lg.lines)
	}
	info := c.workerInfo(w.ID())
	if info.Model != "sdxl-small-base" || info.Job != "" || len(info.Models) != 1 || info.Models[0].Role != "base" ||
		info.Models[0].Name != "sdxl-small-base" || time.Since(info.Seen) > time.Minute {
		t.Errorf("worker info: %+v", info)
	}
}

// workerInfo reads a worker's WorkerInfo.
func (c *cluster) workerInfo(id string) WorkerInfo {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := c.js.KeyValue(ctx, c.names.Workers)
	if err != nil {
		c.t.Fatal(err)
	}
	e, err := kv.Get(ctx, id)
	if err != nil {
		c.t.Fatalf("worker %s: %v", id, err)
	}
	var info WorkerInfo
	if err := json.Unmarshal(e.Value(), &info); err != nil {
		c.t.Fatal(err)
	}
	return info
}

func countLines(l *logs, s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			n++
		}
	}
	return n
}

// TestWorkerCheck answers check requests: a valid job normalized (its
// seed drawn), a bad one with its field.
func TestWorkerCheck(t *testing.T) {
	c := newCluster(t)
	c.start(testConfig(t.Logf), nil)
	ask := func(body string) CheckReply {
		t.Helper()
		var m *nats.Msg
		var err error
		for range 50 { // the worker subscribes when it has started
			if m, err = c.nc.Request(c.names.CheckSubject("sdxl-small-base"), []byte(body), 2*time.Second); err != nats.ErrNoResponders {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		var rep CheckReply
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := ask(`{"prompt":"a cat","width":64,"height":64,"steps":2,"seed":-1}`)
	if rep.Error != "" || rep.Spec.Seed < 0 || rep.Spec.Steps != 2 || rep.Spec.SamplerName != "Euler" {
		t.Errorf("valid job: %+v", rep)
	}
	rep = ask(`{"prompt":"a cat","width":65}`)
	if rep.Field != "width" || rep.Error == "" {
		t.Errorf("bad width: %+v", rep)
	}
	rep = ask(`{"prompt":"a cat","colour":"red"}`)
	if rep.Field != "" || !strings.Contains(rep.Error, "colour") {
		t.Errorf("unknown field: %+v", rep)
	}
}

// TestWorkerInvalidJobFailsOnce fails a job the runner refuses at once:
// one attempt, no retry, no image.
func TestWorkerInvalidJobFailsOnce(t *testing.T) {
	c := newCluster(t)
	w := c.start(testConfig(t.Logf), nil)
	bad := spec(1)
	bad.Width = 65
	c.submit("bad", bad)
	c.submit("good", spec(2))
	recs := c.wait([]string{"bad", "good"}, 30*time.Second)
	r := recs["bad"]
	if r.Status.State != jobs.Failed || !strings.Contains(r.Status.Error, "width") || r.Attempts != 0 || r.Worker != w.ID() {
		t.Errorf("bad job: %+v", r)
	}
	c.checkResult("good", recs["good"], c.reference(spec(2)))
	c.expectEmptyStream()
}

// expectEmptyStream checks that every job message is gone (acknowledged
// or terminated).
func (c *cluster) expectEmptyStream() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		s, err := c.js.Stream(ctx, c.names.Stream)
		if err != nil {
			c.t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			c.t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			return
		}
		if ctx.Err() != nil {
			c.t.Fatalf("%d job messages left in the stream", info.State.Msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
