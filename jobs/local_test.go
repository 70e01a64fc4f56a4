package jobs

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/internal/testengine"
	"github.com/sdxl-go/sdxl/jobspec"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
)

func newLocal(t *testing.T, cfg Config) *Local {
	t.Helper()
	e := testengine.Bundled(t, sdxl.Options{MemoryBudget: -1})
	r := NewRunner(context.Background(), e, RunnerOptions{Device: "cpu", DType: "f32", Version: "sdxl-run test", BaseName: "sdxl-small-base"})
	l := NewLocal(cfg, r)
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func smallSpec(steps int) jobspec.Spec {
	s := jobspec.New(jobspec.Native)
	s.Prompt, s.Width, s.Height, s.Steps, s.Seed = "a red cube", 64, 64, steps, 7
	return s
}

// wait follows a job to its end through Subscribe.
func wait(t *testing.T, l *Local, id string) Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := l.Subscribe(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for range ch {
	}
	st, err := l.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if !st.State.Finished() {
		t.Fatalf("job %s still %s after its events ended", id, st.State)
	}
	return st
}

func TestLocalRunsJobWithMetadata(t *testing.T) {
	dir := t.TempDir()
	l := newLocal(t, Config{OutputDir: dir})
	spec := smallSpec(3)
	spec.BatchSize, spec.NIter = 2, 2
	st, err := l.Submit(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	st = wait(t, l, st.ID)
	if st.State != Done || len(st.Images) != 4 {
		t.Fatalf("state %s, %d images, error %q", st.State, len(st.Images), st.Error)
	}
	wantSeeds := []uint64{7, 7, 9, 9} // batches share a seed; batch k is seed + k*batch_size
	for i, im := range st.Images {
		if im.Seed != wantSeeds[i] || im.Width != 64 || im.Height != 64 {
			t.Errorf("image %d: seed %d size %dx%d", i, im.Seed, im.Width, im.Height)
		}
		b, err := l.Image(st.ID, i)
		if err != nil {
			t.Fatal(err)
		}
		m, err := imageio.ReadMetadata(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"a red cube\nNegative prompt: \nSteps: 3, Sampler: Euler, Schedule type: Automatic, CFG scale: 5, Seed: " + strconv.FormatUint(wantSeeds[i], 10),
			"Size: 64x64", "Model: sdxl-small-base", "Batch size: 2", "Version: sdxl-run test"} {
			if !strings.Contains(m.Parameters, want) {
				t.Errorf("image %d parameters lack %q:\n%s", i, want, m.Parameters)
			}
		}
		if !strings.Contains(m.Run, `"tool": "sdxl-run serve"`) || !strings.Contains(m.Run, `"job": {`) {
			t.Errorf("image %d run record:\n%s", i, m.Run)
		}
		if im.Infotext != m.Parameters {
			t.Errorf("status infotext differs from the PNG's")
		}
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		if fb, err := os.ReadFile(im.File); err != nil || !bytes.Equal(fb, b) {
			t.Errorf("output file %s: %v", im.File, err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 4 {
		t.Errorf("output folder has %d files, want 4: %v", len(files), files)
	}
}

func TestLocalEventsAndPreviews(t *testing.T) {
	l := newLocal(t, Config{PreviewEvery: time.Nanosecond})
	st, err := l.Submit(context.Background(), smallSpec(4))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := l.Subscribe(context.Background(), st.ID)
	if err != nil {
		t.Fatal(err)
	}
	var previews, steps int
	last := -1.0
	for ev := range ch {
		if ev.Status.Progress < last {
			t.Errorf("progress went back from %g to %g", last, ev.Status.Progress)
		}
		last = ev.Status.Progress
		if ev.Status.Stage == "base" && ev.Status.Step > 0 {
			steps++
		}
		if ev.Preview != nil {
			img, err := png.Decode(bytes.NewReader(ev.Preview))
			if err != nil || img.Bounds().Dx() != 8 {
				t.Fatalf("preview: %v, %v", err, img.Bounds())
			}
			previews++
		}
	}
	if previews < 4 || steps < 4 || last != 1 {
		t.Errorf("%d previews, %d step events, final progress %g", previews, steps, last)
	}
}

func TestLocalBadJob(t *testing.T) {
	l := newLocal(t, Config{})
	spec := smallSpec(2)
	spec.SamplerName = "Euler X"
	_, err := l.Submit(context.Background(), spec)
	var fe *jobspec.FieldError
	if !errors.As(err, &fe) || fe.Field != "sampler_name" {
		t.Fatalf("unknown sampler: %v", err)
	}
	spec = smallSpec(2)
	spec.Width = 60
	if _, err = l.Submit(context.Background(), spec); !errors.As(err, &fe) || fe.Field != "width" {
		t.Fatalf("width 60: %v", err)
	}
	spec = smallSpec(2)
	r := true
	spec.Refiner = &r
	if _, err = l.Submit(context.Background(), spec); !errors.As(err, &fe) || fe.Field != "refiner" {
		t.Fatalf("refiner without one: %v", err)
	}
}

// slowSpec is a job long enough to be caught running.
func slowSpec() jobspec.Spec { s := smallSpec(1000); s.Width, s.Height = 128, 128; return s }

func TestLocalQueueFullCancelAndClose(t *testing.T) {
	dir := t.TempDir()
	l := newLocal(t, Config{MaxQueue: 2, OutputDir: dir})
	before := runtime.NumGoroutine()
	running, err := l.Submit(context.Background(), slowSpec())
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, l, running.ID, Running)
	var ids []string
	for i := 0; i < 2; i++ {
		st, err := l.Submit(context.Background(), smallSpec(2))
		if err != nil {
			t.Fatal(err)
		}
		if st.Position != i+1 {
			t.Errorf("queue position %d, want %d", st.Position, i+1)
		}
		ids = append(ids, st.ID)
	}
	_, err = l.Submit(context.Background(), smallSpec(2))
	var qf *QueueFullError
	if !errors.As(err, &qf) || qf.RetryAfter < time.Second {
		t.Fatalf("third queued job: %v", err)
	}
	if st, err := l.Cancel(ids[1]); err != nil || st.State != Cancelled {
		t.Fatalf("cancel queued: %v %v", st.State, err)
	}
	start := time.Now()
	if _, err := l.Cancel(running.ID); err != nil {
		t.Fatal(err)
	}
	st := wait(t, l, running.ID)
	if st.State != Cancelled || time.Since(start) > 5*time.Second {
		t.Fatalf("cancelled running job: %s after %v", st.State, time.Since(start))
	}
	if _, err := l.Cancel(running.ID); !errors.Is(err, ErrFinished) {
		t.Errorf("cancel of a finished job: %v", err)
	}
	if st := wait(t, l, ids[0]); st.State != Done {
		t.Errorf("queued job after the cancel: %s %s", st.State, st.Error)
	}
	// Close while a job runs: it stops, nothing half-written remains.
	slow, _ := l.Submit(context.Background(), slowSpec())
	waitState(t, l, slow.ID, Running)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := l.Get(slow.ID); st.State != Cancelled {
		t.Errorf("job running at Close: %s", st.State)
	}
	if _, err := l.Submit(context.Background(), smallSpec(2)); !errors.Is(err, ErrClosed) {
		t.Errorf("submit after Close: %v", err)
	}
	files, _ := os.ReadDir(dir)
	if len(files) != 1 {
		t.Errorf("output folder: %d files, want the one finished image", len(files))
	}
	time.Sleep(50 * time.Millisecond)
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Errorf("%d goroutines after Close, %d before", n, before)
	}
}

func waitState(t *testing.T, l *Local, id string, s State) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if st, _ := l.Get(id); st.State == s {
			return
		}
	}
	t.Fatalf("job %s never %s", id, s)
}

func TestLocalSkip(t *testing.T) {
	l := newLocal(t, Config{})
	spec := slowSpec()
	spec.NIter = 2
	st, err := l.Submit(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, l, st.ID, Running)
	if err := l.Skip(st.ID); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if s, _ := l.Get(st.ID); s.Batch == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("skip did not move to batch 2")
		}
	}
	l.Cancel(st.ID)
	if s := wait(t, l, st.ID); s.State != Cancelled || len(s.Images) != 0 {
		t.Errorf("after skip and cancel: %s with %d images", s.State, len(s.Images))
	}
}
