package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"time"

	"github.com/sdxl-go/sdxl/natsjobs"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
	"github.com/sdxl-go/sdxl/sdxl"
)

// batchQueue is what `sdxl-run batch --nats` needs of its front end
// (natsjobs.Service): jobs submitted under ids of the caller's choosing
// (a repeated id is the same job), followed, and their images fetched.
type batchQueue interface {
	SubmitChecked(ctx context.Context, id string, c natsjobs.Checked) (jobs.Status, error)
	Subscribe(ctx context.Context, id string) (<-chan jobs.Event, error)
	Get(id string) (jobs.Status, error)
	Image(id string, n int) ([]byte, error)
}

// runNATS runs the batch on the workers of a NATS deployment: every line
// is checked by a live worker before the first is submitted (a bad line is
// exit 2, nothing queued or written), then runQueue submits and collects.
func (f *batchFlags) runNATS(ctx context.Context, lines []batchLine, todo []string, stdout, stderr io.Writer) error {
	logger := log.New(stderr, "sdxl-run batch: ", log.LstdFlags)
	nc, err := connectNATS(f.nats, "sdxl-run batch", logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	names, _ := natsjobs.NamesFor(f.prefix)
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The batch's lines wait in the stream, which keeps them on disk: no
	// bound of its own beyond JetStream's.
	svc, err := natsjobs.NewService(c, nc, natsjobs.ServiceConfig{Names: names, Model: f.modelID, MaxQueue: math.MaxInt32, Logf: logger.Printf})
	if err != nil {
		return interruptedOr(ctx, fmt.Errorf("--nats %s: %v", f.nats, err))
	}
	defer svc.Close(context.Background())
	var bad []string
	checked := make(map[int]natsjobs.Checked, len(lines))
	for _, l := range lines {
		c, err := svc.Check(ctx, l.spec)
		checked[l.no] = c
		if err != nil {
			var fe *jobspec.FieldError
			if !errors.As(err, &fe) {
				return interruptedOr(ctx, fmt.Errorf("--nats %s: line %d: %w", f.nats, l.no, err))
			}
			bad = append(bad, lineError(l.no, err))
		}
	}
	if len(bad) > 0 {
		return badInput(f.in, bad)
	}
	if err := f.makeOut(todo); err != nil {
		return err
	}
	return f.runQueue(ctx, svc, lines, checked, stdout, stderr)
}

// interruptedOr is err, or the interruption when ctx is done.
func interruptedOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return &exitError{code: 130, err: errors.New("interrupted; nothing was submitted")}
	}
	return err
}

// runQueue submits every line still to run to q under its line's id (as
// checked, by line number),
// then collects the jobs in order and writes their images as a local run
// does. An interruption leaves the submitted jobs to the workers: the same
// command submits the same ids again (deduplicated) and collects them.
func (f *batchFlags) runQueue(ctx context.Context, q batchQueue, lines []batchLine, checked map[int]natsjobs.Checked, stdout, stderr io.Writer) error {
	notes := stderr
	if f.quiet {
		notes = io.Discard
	}
	b := &batch{f: f, lines: lines, stdout: stdout, stderr: stderr, notes: notes, bar: newBatchBar(newProgress(stderr, f.quiet), lines),
		resume: "the submitted jobs go on on the workers; run the same command again to collect them"}
	submitErr := map[int]error{}
	for i := range lines {
		l := &lines[i]
		if len(l.todo) == 0 {
			continue
		}
		if _, err := q.SubmitChecked(ctx, l.id, checked[l.no]); err != nil {
			if ctx.Err() != nil {
				return b.interrupted(l)
			}
			submitErr[l.no] = err
		}
	}
	return b.run(ctx, func(ctx context.Context, l *batchLine) error {
		if err := submitErr[l.no]; err != nil {
			return err
		}
		return b.collect(ctx, q, l)
	})
}

// collect waits for line l's job and writes its images.
func (b *batch) collect(ctx context.Context, q batchQueue, l *batchLine) error {
	stageHook(ctx, fmt.Sprintf("line%d.wait", l.no))
	st, err := b.await(ctx, q, l)
	if err != nil {
		return err
	}
	switch {
	case st.State == jobs.Failed:
		return errors.New(st.Error)
	case st.State != jobs.Done:
		return fmt.Errorf("the job was %s", st.State)
	case len(st.Images) != len(l.paths):
		return fmt.Errorf("the job made %d images, want %d", len(st.Images), len(l.paths))
	}
	pngs := make([][]byte, len(l.paths))
	for _, j := range l.todo {
		if pngs[j], err = q.Image(l.id, j); err != nil {
			return fmt.Errorf("fetching image %d of job %s: %w", j, l.id, err)
		}
	}
	return b.write(ctx, l, pngs)
}

// await follows l's job until it ends and returns its final status. A
// subscription that ends before the job (the connection came back after
// a server restart) is made again.
func (b *batch) await(ctx context.Context, q batchQueue, l *batchLine) (jobs.Status, error) {
	start := time.Now()
	for {
		ch, err := q.Subscribe(ctx, l.id)
		if err != nil {
			return jobs.Status{}, err
		}
		for ev := range ch {
			b.bar.status(l, ev.Status, start)
		}
		if err := ctx.Err(); err != nil {
			return jobs.Status{}, err
		}
		st, err := q.Get(l.id)
		if err != nil || st.State.Finished() {
			return st, err
		}
		select {
		case <-ctx.Done():
			return jobs.Status{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// status draws the bar for a status of line l's job (followed since
// start).
func (b *batchBar) status(l *batchLine, st jobs.Status, start time.Time) {
	ev := sdxl.Event{Stage: sdxl.Stage(st.Stage), Step: st.Step, Steps: st.Steps, Done: int(1000 * st.Progress), Total: 1000,
		Elapsed: time.Since(start), ETA: time.Duration(st.ETA * float64(time.Second))}
	if st.State == jobs.Queued {
		ev.Stage = sdxl.Stage(fmt.Sprintf("queued (%d)", st.Position))
	}
	b.step(l, st.Progress, ev)
}
