package natsjobs

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/sdxl"
)

// control is a running job's context and what its control subject and
// the worker's drain did to it.
type control struct {
	ctx  context.Context
	stop context.CancelFunc
	sub  *nats.Subscription

	mu        sync.Mutex
	batch     context.CancelFunc // the running batch's (skip)
	cancelled bool               // a "cancel" message
	drained   bool               // stopped by the worker's drain
}

// listen follows a job's control subject; it is set up before the job is
// marked running, so that no "cancel" sent after that is missed.
func (w *Worker) listen(id string) (*control, error) {
	ctl := &control{}
	ctl.ctx, ctl.stop = context.WithCancel(context.Background())
	sub, err := w.nc.Subscribe(w.cfg.Names.ControlSubject(id), func(m *nats.Msg) {
		ctl.mu.Lock()
		defer ctl.mu.Unlock()
		switch string(m.Data) {
		case "cancel":
			ctl.cancelled = true
			ctl.stop()
		case "skip":
			if ctl.batch != nil {
				ctl.batch()
			}
		}
	})
	if err != nil {
		ctl.stop()
		return nil, err
	}
	ctl.sub = sub
	w.nc.FlushTimeout(time.Second) // the server knows the subscription
	return ctl, nil
}

func (c *control) close() {
	c.sub.Unsubscribe()
	c.stop()
}

// outcome is how a run ended.
type outcome struct {
	out   []jobs.Output
	err   error
	track *jobs.Tracker
	// cancelled by a control message, drained by the worker's stop.
	cancelled, drained bool
}

// runJob runs a job marked running and settles it, saying it is in
// progress meanwhile.
func (w *Worker) runJob(ctx context.Context, d *delivery, p *jobs.Prepared, rec Record, ctl *control) {
	w.setJob(d.id)
	defer w.setJob("")
	if w.onRunning != nil {
		w.onRunning(d.id)
	}
	alive := make(chan struct{})
	defer close(alive)
	go w.inProgress(d, alive)
	go w.drain(ctx, ctl)
	start := time.Now()
	o := w.execute(d, p, rec, ctl)
	octx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	switch {
	case o.err == nil || o.cancelled:
		w.finish(octx, d, o, time.Since(start))
	case o.drained:
		w.giveBack(octx, d)
	default:
		w.retryLater(octx, d, o.err)
	}
}

// inProgress tells the server every AckWait/3 that the job is being
// worked on, until alive closes.
func (w *Worker) inProgress(d *delivery, alive <-chan struct{}) {
	t := time.NewTicker(w.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-alive:
			return
		case <-t.C:
			d.msg.InProgress() // a miss (server restarting) is mended at the next tick
		}
	}
}

// drain stops the job DrainTimeout after ctx is done, unless it ended.
func (w *Worker) drain(ctx context.Context, ctl *control) {
	select {
	case <-ctl.ctx.Done():
		return
	case <-ctx.Done():
	}
	t := time.NewTimer(w.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-ctl.ctx.Done():
	case <-t.C:
		ctl.mu.Lock()
		ctl.drained = true
		ctl.stop()
		ctl.mu.Unlock()
	}
}

// execute runs the job's batches, publishing throttled progress.
func (w *Worker) execute(d *delivery, p *jobs.Prepared, rec Record, ctl *control) outcome {
	track := &jobs.Tracker{Every: w.cfg.PreviewEvery, Batches: p.Spec.NIter}
	o := outcome{track: track}
	if w.failRun != nil {
		if o.err = w.failRun(p.Spec); o.err != nil {
			return o
		}
	}
	progress := func(preview []byte) {
		st := rec.Status
		track.Fill(&st)
		w.publish(ProgressMsg{Status: st, Preview: preview}, d.id)
	}
	o.out, o.err = w.r.Run(ctl.ctx, p, jobs.Hooks{
		Batch: func(ctx context.Context, k int) (context.Context, context.CancelFunc) {
			bctx, cancel := context.WithCancel(ctx)
			ctl.mu.Lock()
			ctl.batch = cancel
			ctl.mu.Unlock()
			track.StartBatch(k)
			progress(nil)
			return bctx, cancel
		},
		Progress: func(k int, ev sdxl.Event) {
			var preview []byte
			if track.Event(k, ev) {
				preview = jobs.PreviewPNG(ev)
			}
			progress(preview)
		},
	})
	ctl.mu.Lock()
	o.cancelled, o.drained = ctl.cancelled, ctl.drained
	ctl.mu.Unlock()
	if o.err == nil || ctl.ctx.Err() == nil {
		o.cancelled, o.drained = false, false // it ended before any stop
	}
	return o
}

// finish stores a finished (or cancelled) job's images, then records it
// done (cancelled), then acknowledges it: a job acknowledged has its
// result. Another worker's result recorded first wins. (Two workers hold
// one job only when one was silent past AckWait; should both store
// before either records, the objects are the later one's: the same
// pixels and parameters, only the run record's date and time differ.)
func (w *Worker) finish(ctx context.Context, d *delivery, o outcome, took time.Duration) {
	if r, _, err := w.load(ctx, d.id); err == nil && r.Status.State.Finished() {
		w.cfg.Logf("job %s: already %s by %s: this result dropped", d.id, r.Status.State, r.Worker)
		w.ack(ctx, d)
		return
	}
	images := make([]jobs.Image, len(o.out))
	for i, out := range o.out {
		err := retry(ctx, func(c context.Context) error {
			_, err := w.results.PutBytes(c, ImageName(d.id, i), out.PNG)
			return err
		})
		if err != nil {
			w.cfg.Logf("job %s: storing image %d: %v; not acknowledged", d.id, i, err)
			return
		}
		images[i] = jobs.ImageOf(d.id, i, out)
	}
	state := jobs.Done
	if o.cancelled {
		state = jobs.Cancelled
	}
	o.track.Finish(state)
	var v verdict
	rec, err := w.update(ctx, d.id, func(r *Record, _ bool) error {
		if r.Status.State.Finished() {
			v = settled
			return errUnchanged
		}
		v = runIt
		now := time.Now().UTC()
		st := &r.Status
		st.State, st.Finished, st.Images, st.Error = state, &now, images, ""
		o.track.Fill(st)
		r.Worker = w.cfg.ID
		return nil
	})
	if err != nil {
		w.cfg.Logf("job %s: recording it %s: %v; not acknowledged", d.id, state, err)
		return
	}
	if v == settled {
		w.cfg.Logf("job %s: already %s by %s: this result dropped", d.id, rec.Status.State, rec.Worker)
	} else {
		w.publishFinal(rec)
		w.cfg.Logf("job %s: %s in %.1fs: %d images (attempt %d)", d.id, state, took.Seconds(), len(images), rec.Attempts)
	}
	w.ack(ctx, d)
}

// giveBack returns a job stopped by the drain to the queue: the attempt
// does not count.
func (w *Worker) giveBack(ctx context.Context, d *delivery) {
	_, err := w.update(ctx, d.id, func(r *Record, _ bool) error {
		if !w.ours(r, d) {
			return errUnchanged
		}
		r.Attempts--
		r.Status.State, r.Status.Started, r.Status.Progress = jobs.Queued, nil, 0
		return nil
	})
	if err != nil {
		w.cfg.Logf("job %s: recording it queued: %v", d.id, err)
	}
	d.msg.Nak()
	w.cfg.Logf("job %s: stopped by the worker's stop: given back to the queue", d.id)
}

// retryLater records a failed attempt: the job is queued again after
// RetryDelay, or failed with the error after MaxDeliveries attempts.
func (w *Worker) retryLater(ctx context.Context, d *delivery, runErr error) {
	msg := runErr.Error()
	v := notOurs
	rec, err := w.update(ctx, d.id, func(r *Record, _ bool) error {
		if !w.ours(r, d) {
			v = notOurs
			return errUnchanged
		}
		r.LastError = msg
		if r.Attempts >= w.cfg.MaxDeliveries {
			v = givenUp
			w.fail(r, fmt.Sprintf("%s (attempt %d of %d)", msg, r.Attempts, w.cfg.MaxDeliveries))
			return nil
		}
		v = runIt
		r.Status.State, r.Status.Started, r.Status.Progress = jobs.Queued, nil, 0
		return nil
	})
	switch {
	case err != nil:
		w.cfg.Logf("job %s: attempt failed: %s; recording it: %v", d.id, msg, err)
		d.msg.NakWithDelay(w.cfg.RetryDelay)
	case v == givenUp:
		w.cfg.Logf("job %s: failed: %s", d.id, rec.Status.Error)
		w.publishFinal(rec)
		w.term(ctx, d)
	case v == notOurs:
		d.msg.Nak()
	default:
		w.cfg.Logf("job %s: attempt %d failed: %s; tried again in %v", d.id, rec.Attempts, msg, w.cfg.RetryDelay)
		d.msg.NakWithDelay(w.cfg.RetryDelay)
	}
}
