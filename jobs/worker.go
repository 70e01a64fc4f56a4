package jobs

import (
	"context"
	"sort"
	"time"

	"github.com/sdxl-go/sdxl/jobspec"
	"github.com/sdxl-go/sdxl/sdxl"
)

// job is one job's state, guarded by Local.mu.
type job struct {
	id               string
	prep             *Prepared
	created, started time.Time
	ended            time.Time
	state            State
	err              string
	warnings         []string
	track            Tracker
	images           []Output
	files            []string
	preview          []byte
	cancel           context.CancelFunc
	batchCancel      context.CancelFunc
	cancelRequested  bool
	subs             []*sub
	// record is the spec as Status shows it (images as digests).
	record jobspec.Spec
}

// sub is one Subscribe call.
type sub struct {
	ch   chan Event
	done chan struct{} // closed with ch
}

// work is one worker: it runs the queue's jobs on r until Close.
func (l *Local) work(r *Runner) {
	defer l.wg.Done()
	for {
		j, ctx := l.next()
		if j == nil {
			return
		}
		l.run(ctx, r, j)
	}
}

// next waits for a queued job and marks it running (nil after Close).
func (l *Local) next() (*job, context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.queue) == 0 && !l.closed {
		l.cond.Wait()
	}
	if l.closed {
		return nil, nil
	}
	j := l.queue[0]
	l.queue = l.queue[1:]
	ctx, cancel := context.WithCancel(context.Background())
	j.state, j.started, j.cancel = Running, time.Now(), cancel
	j.track.StartBatch(0)
	l.publish(j, nil)
	return j, ctx
}

// run runs one job and records how it ended.
func (l *Local) run(ctx context.Context, r *Runner, j *job) {
	_, err := r.Run(ctx, j.prep, Hooks{
		Batch: func(ctx context.Context, k int) (context.Context, context.CancelFunc) {
			bctx, cancel := context.WithCancel(ctx)
			l.mu.Lock()
			j.batchCancel = cancel
			j.track.StartBatch(k)
			l.mu.Unlock()
			return bctx, cancel
		},
		Progress: func(k int, ev sdxl.Event) { l.progress(j, k, ev) },
		Images:   func(k int, out []Output) { l.addImages(j, out) },
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	j.cancel()
	d := time.Since(j.started)
	if l.meanJob == 0 {
		l.meanJob = d
	} else {
		l.meanJob = (3*l.meanJob + d) / 4
	}
	switch {
	case err == nil:
		l.finish(j, Done, "")
	case canceled(err) && (j.cancelRequested || ctx.Err() != nil):
		l.finish(j, Cancelled, "")
	default:
		l.cfg.Logf("job %s failed: %v", j.id, err)
		l.finish(j, Failed, err.Error())
	}
}

// progress records an engine event and publishes it, with a preview
// picture at most every PreviewEvery (and at a stage's last step).
func (l *Local) progress(j *job, k int, ev sdxl.Event) {
	var preview []byte
	l.mu.Lock()
	wantPreview := j.track.Event(k, ev)
	l.mu.Unlock()
	if wantPreview {
		preview = PreviewPNG(ev) // here: the event's latents belong to the running step
	}
	l.mu.Lock()
	if preview != nil {
		j.preview = preview
	}
	l.publish(j, preview)
	l.mu.Unlock()
}

// addImages keeps a finished batch's images (and writes them to the
// output folder).
func (l *Local) addImages(j *job, out []Output) {
	l.mu.Lock()
	first := len(j.images)
	l.mu.Unlock()
	files := make([]string, len(out))
	for i, o := range out {
		files[i] = l.writeFile(j, first+i, o.PNG)
	}
	l.mu.Lock()
	j.images = append(j.images, out...)
	j.files = append(j.files, files...)
	l.publish(j, nil)
	l.mu.Unlock()
}

// finish ends a job (l.mu held): the final event, then the subscribers'
// channels close; the oldest finished jobs beyond Keep are forgotten.
func (l *Local) finish(j *job, s State, msg string) {
	j.state, j.err, j.ended = s, msg, time.Now()
	j.track.Finish(s)
	j.batchCancel, j.preview = nil, nil
	final := Event{Status: l.status(j)}
	for _, s := range j.subs {
		select {
		case s.ch <- final:
		default:
			// Full: make room by dropping an intermediate event.
			select {
			case <-s.ch:
			default:
			}
			select {
			case s.ch <- final:
			default:
			}
		}
		close(s.ch)
		close(s.done)
	}
	j.subs = nil
	l.finished = append(l.finished, j)
	for len(l.finished) > l.cfg.Keep {
		delete(l.jobs, l.finished[0].id)
		l.finished = l.finished[1:]
	}
}

// publish sends j's status (and a preview) to its subscribers without
// waiting for slow ones (l.mu held).
func (l *Local) publish(j *job, preview []byte) {
	if len(j.subs) == 0 {
		return
	}
	ev := Event{Status: l.status(j), Preview: preview}
	for _, s := range j.subs {
		select {
		case s.ch <- ev:
		default:
		}
	}
}

// Subscribe implements Service.
func (l *Local) Subscribe(ctx context.Context, id string) (<-chan Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	j, ok := l.jobs[id]
	if !ok {
		return nil, ErrNotFound
	}
	s := &sub{ch: make(chan Event, 16), done: make(chan struct{})}
	s.ch <- Event{Status: l.status(j), Preview: j.preview}
	if j.state.Finished() {
		close(s.ch)
		return s.ch, nil
	}
	j.subs = append(j.subs, s)
	go func() {
		select {
		case <-ctx.Done():
			l.unsubscribe(j, s)
		case <-s.done:
		}
	}()
	return s.ch, nil
}

func (l *Local) unsubscribe(j *job, s *sub) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range j.subs {
		if x == s {
			j.subs = append(j.subs[:i], j.subs[i+1:]...)
			close(s.ch)
			close(s.done)
			return
		}
	}
}

// status is j's Status (l.mu held).
func (l *Local) status(j *job) Status {
	st := Status{ID: j.id, State: j.state, Created: j.created, Error: j.err,
		Warnings: j.warnings, Spec: j.record, Batches: j.prep.Spec.NIter}
	j.track.Fill(&st)
	if j.state == Queued {
		for i, q := range l.queue {
			if q == j {
				st.Position = i + 1
			}
		}
	}
	if !j.started.IsZero() {
		t := j.started
		st.Started = &t
	}
	if !j.ended.IsZero() {
		t := j.ended
		st.Finished = &t
	}
	for i, o := range j.images {
		im := ImageOf(j.id, i, o)
		im.File = j.files[i]
		st.Images = append(st.Images, im)
	}
	return st
}

func sortByCreated(s []Status) {
	sort.SliceStable(s, func(a, b int) bool {
		if s[a].Created.Equal(s[b].Created) {
			return s[a].ID < s[b].ID
		}
		return s[a].Created.Before(s[b].Created)
	})
}
