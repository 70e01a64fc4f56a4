//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdxl-go/sdxl/internal/natstest"
	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/natsjobs"
	"github.com/sdxl-go/sdxl/sdxl/bundled"
)

// TestWorkerFlagErrors: a flag mistake is exit 2 with the flag named,
// before any model is loaded; an unreachable server is exit 1 naming it.
func TestWorkerFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "--nats URL is required"},
		{[]string{"--nats", "nats://127.0.0.1:1", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--nats", "nats://127.0.0.1:1", "--max-deliveries", "0"}, 2, "--max-deliveries 0"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--model-id", "a.b"}, 2, `--model-id "a.b"`},
		{[]string{"--nats", "nats://127.0.0.1:1", "--prefix", "a b"}, 2, `--prefix "a b"`},
		{[]string{"--nats", "nats://127.0.0.1:1", "--device", "tpu"}, 2, `--device "tpu"`},
		{[]string{"--nats", "nats://127.0.0.1:1", "--ack-wait", "10ms"}, 2, "--ack-wait 10ms"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--bogus"}, 2, "-bogus"},
		{[]string{"--nats", "nats://127.0.0.1:1"}, 1, "--nats nats://127.0.0.1:1: cannot connect"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"worker"}, c.args...), &stdout, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}

// TestWorkerCommand runs `sdxl-run worker` on an in-process NATS server:
// a job published to the stream is done, its image stored; SIGTERM
// during a job lets it finish (done, acknowledged) and the worker exits
// 143.
func TestWorkerCommand(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	wk := startWorkerCmd(t, "--ack-wait", "2s")
	js, names, stderr := wk.js, wk.names, wk.stderr
	publish := wk.publish
	publish("first", 2)
	rec := waitRecord(t, js, names, "first", func(r natsjobs.Record) bool { return r.Status.State.Finished() })
	if rec.Status.State != jobs.Done || len(rec.Status.Images) != 1 || rec.Status.Images[0].Seed != 5 {
		t.Fatalf("first job: %+v\n%s", rec, stderr.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obj, _ := js.ObjectStore(ctx, names.Results)
	if b, err := obj.GetBytes(ctx, natsjobs.ImageName("first", 0)); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("first job's image: %v", err)
	}
	publish("second", 80)
	waitRecord(t, js, names, "second", func(r natsjobs.Record) bool { return r.Status.State == jobs.Running })
	wk.cmd.Process.Signal(syscall.SIGTERM)
	err := wk.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 143 {
		t.Fatalf("after SIGTERM: %v\n%s", err, stderr.String())
	}
	rec = waitRecord(t, js, names, "second", func(r natsjobs.Record) bool { return true })
	if rec.Status.State != jobs.Done || len(rec.Status.Images) != 1 {
		t.Errorf("the job running at SIGTERM: %+v", rec)
	}
	for _, want := range []string{"job first: done in", "job second: done in", "stopping: finishing the running job"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if !strings.Contains(wk.stdout.String(), "takes the jobs of model "+natsjobs.ModelID(bundled.Name)) {
		t.Errorf("stdout: %q", wk.stdout.String())
	}
}

// TestWorkerCommandHandsBack: SIGTERM during a job longer than
// --drain-timeout hands the job back to the queue (queued, its attempt
// not counted, its message still in the stream) and exits 143 at once.
func TestWorkerCommandHandsBack(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	wk := startWorkerCmd(t, "--drain-timeout", "100ms", "--max-steps", "1000")
	wk.publish("long", 1000)
	waitRecord(t, wk.js, wk.names, "long", func(r natsjobs.Record) bool { return r.Status.State == jobs.Running })
	start := time.Now()
	wk.cmd.Process.Signal(syscall.SIGTERM)
	err := wk.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 143 || time.Since(start) > 3*time.Second {
		t.Fatalf("after SIGTERM: %v in %v\n%s", err, time.Since(start), wk.stderr.String())
	}
	rec := waitRecord(t, wk.js, wk.names, "long", func(natsjobs.Record) bool { return true })
	if rec.Status.State != jobs.Queued || rec.Attempts != 0 || !strings.Contains(wk.stderr.String(), "job long: stopped by the worker's stop: given back") {
		t.Errorf("the job running at SIGTERM: %+v\n%s", rec, wk.stderr.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := wk.js.Stream(ctx, wk.names.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("stream after the hand-back: %+v %v", info, err)
	}
}

// workerCmd is a running `sdxl-run worker` on an in-process server.
type workerCmd struct {
	cmd            *exec.Cmd
	js             jetstream.JetStream
	names          natsjobs.Names
	stdout, stderr *bytes.Buffer
	publish        func(id string, steps int)
	// url is the NATS server's.
	url string
}

func startWorkerCmd(t *testing.T, args ...string) *workerCmd {
	t.Helper()
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	wk := &workerCmd{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, url: srv.URL()}
	wk.js, _ = jetstream.New(nc)
	wk.names, _ = natsjobs.NamesFor("")
	wk.cmd = exec.Command(os.Args[0], append([]string{"worker", "--nats", srv.URL()}, args...)...)
	wk.cmd.Env = append(os.Environ(), "SDXL_RUN_CLI=1")
	wk.cmd.Stdout, wk.cmd.Stderr = wk.stdout, wk.stderr
	if err := wk.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wk.cmd.Process.Kill(); wk.cmd.Wait() })
	wk.publish = func(id string, steps int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		body, _ := json.Marshal(map[string]any{"prompt": "a red cube", "width": 64, "height": 64, "steps": steps, "seed": 5})
		// The stream exists once the worker (or a front end) has set up.
		for {
			_, err := wk.js.Publish(ctx, wk.names.JobSubject(natsjobs.ModelID(bundled.Name)), body, jetstream.WithMsgID(id))
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("publishing: %v\n%s", err, wk.stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return wk
}

// waitRecord waits (up to a minute) for a job's record to satisfy ok.
func waitRecord(t *testing.T, js jetstream.JetStream, names natsjobs.Names, id string, ok func(natsjobs.Record) bool) natsjobs.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		var rec natsjobs.Record
		kv, err := js.KeyValue(ctx, names.State)
		if err == nil {
			var e jetstream.KeyValueEntry
			if e, err = kv.Get(ctx, id); err == nil {
				if err = json.Unmarshal(e.Value(), &rec); err == nil && ok(rec) {
					return rec
				}
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("job %s: %+v (%v)", id, rec, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
