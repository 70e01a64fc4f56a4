package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdxl-go/sdxl/internal/testengine"
	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/natsjobs"
	"github.com/sdxl-go/sdxl/natsjobs/natsjobstest"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/bundled"
)

// TestBatchNATS: `sdxl-run batch --nats` against an in-process JetStream
// server with one worker on the bundled model. A line the worker refuses
// is exit 2 naming it, with nothing queued or written. Interrupted while
// it waits for line 2, the batch has written line 1 and left its jobs to
// the worker; run again, it submits the same ids (each job ran once),
// collects the rest, and every image has the pixels and parameters of a
// local batch's.
func TestBatchNATS(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	r := jobs.NewRunner(context.Background(), testengine.Bundled(t, sdxl.Options{MemoryBudget: -1}),
		jobs.RunnerOptions{Device: "cpu", DType: "F32", Version: "sdxl-run " + version(), BaseName: bundled.Name, Tool: "sdxl-run worker"})
	d := natsjobstest.Start(t, natsjobs.WorkerConfig{}, natsjobs.ServiceConfig{}, r)
	dir := t.TempDir()
	in, out, local := filepath.Join(dir, "jobs.jsonl"), filepath.Join(dir, "out"), filepath.Join(dir, "local")
	jobsText := `{"prompt": "a", "steps": 2, "width": 64, "height": 64}
{"prompt": "b", "steps": 2, "width": 64, "height": 64, "batch_size": 2}
{"prompt": "c", "seed": 4, "steps": 2, "width": 64, "height": 64, "n_iter": 2}
`
	args := []string{"batch", "--in", in, "--out", out, "--nats", d.Server.URL()}
	batch := func(ctx context.Context) (int, string) {
		var stderr bytes.Buffer
		return run(ctx, args, io.Discard, &stderr), stderr.String()
	}

	os.WriteFile(in, []byte(jobsText+`{"prompt": "d", "steps": 2, "width": 64, "height": 64, "refiner": true}`+"\n"), 0o644)
	if code, msg := batch(context.Background()); code != 2 || !strings.Contains(msg, "line 4: refiner: no refiner is loaded") {
		t.Fatalf("bad line: exit %d: %s", code, msg)
	}
	if _, err := os.Stat(out); err == nil || len(d.Service.List()) != 0 {
		t.Fatalf("a bad input wrote or queued something: %v", d.Service.List())
	}

	os.WriteFile(in, []byte(jobsText), 0o644)
	ctx, hit := cancelAt("line2.wait")
	if code, msg := batch(ctx); code != 130 || !*hit || !strings.Contains(msg, "the submitted jobs go on on the workers") {
		t.Fatalf("interrupted: exit %d: %s", code, msg)
	}
	if got := strings.Join(pngFiles(t, out), " "); got != "00001.png" {
		t.Fatalf("after the interruption: %s, want 00001.png", got)
	}
	if code, msg := batch(context.Background()); code != 0 || !strings.Contains(msg, "3 lines: 2 done, 1 skipped") {
		t.Fatalf("resumed: exit %d: %s", code, msg)
	}
	checkRanOnce(t, d, in)
	var stderr bytes.Buffer
	if code := run(context.Background(), append([]string{"batch", "--in", in, "--out", local}, testDevice()...), io.Discard, &stderr); code != 0 {
		t.Fatalf("local batch: exit %d: %s", code, stderr.String())
	}
	want := pngFiles(t, local)
	if got := pngFiles(t, out); strings.Join(got, " ") != strings.Join(want, " ") || len(got) != 5 {
		t.Fatalf("NATS batch %v, local batch %v", got, want)
	}
	for _, f := range want {
		a, b := filepath.Join(out, f), filepath.Join(local, f)
		if !samePixels(t, decodePNG(t, a), decodePNG(t, b)) || readParams(t, a) != readParams(t, b) {
			t.Errorf("%s: the worker's image differs from the local batch's:\n%s\n%s", f, readParams(t, a), readParams(t, b))
		}
	}
}

// checkRanOnce: every line's job is done after exactly one attempt, and
// the State bucket holds no other job (the rerun's submissions were
// deduplicated).
func checkRanOnce(t *testing.T, d *natsjobstest.Deployment, in string) {
	t.Helper()
	lines, _, _ := readBatch(in)
	nc := natsjobstest.Connect(t, d.Server)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names, _ := natsjobs.NamesFor("")
	kv, err := js.KeyValue(ctx, names.State)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := kv.Keys(ctx)
	if len(keys) != len(lines) {
		t.Errorf("%d jobs in the State bucket, want %d: %v", len(keys), len(lines), keys)
	}
	for _, l := range lines {
		e, err := kv.Get(ctx, l.id)
		if err != nil {
			t.Fatalf("line %d: job %s: %v", l.no, l.id, err)
		}
		var rec natsjobs.Record
		json.Unmarshal(e.Value(), &rec)
		if rec.Status.State != jobs.Done || rec.Attempts != 1 {
			t.Errorf("line %d: %s after %d attempts, want done after 1", l.no, rec.Status.State, rec.Attempts)
		}
	}
}
