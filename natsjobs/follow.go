package natsjobs

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdxl-go/sdxl/jobs"
)

// This file is the Service's view of the jobs: a mirror of the State
// bucket kept by a watcher, the running jobs' progress from their
// progress subjects, and the subscribers they feed.

// watch mirrors the State bucket until ctx is done, watching again
// whenever a watcher ends (the server restarting); ready closes once the
// first watcher has delivered the bucket's contents.
func (s *Service) watch(ctx context.Context, ready chan<- struct{}) {
	defer close(s.done)
	first := true
	for ctx.Err() == nil {
		w, err := s.state.WatchAll(ctx)
		if err != nil {
			s.cfg.Logf("natsjobs: watching %s: %v", s.cfg.Names.State, err)
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		for e := range w.Updates() {
			if e == nil {
				if first {
					first = false
					close(ready)
				}
				continue
			}
			s.applyEntry(e)
		}
		w.Stop()
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// applyEntry takes one change of the State bucket.
func (s *Service) applyEntry(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		s.mu.Lock()
		delete(s.records, e.Key())
		s.mu.Unlock()
		return
	}
	var rec Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		s.cfg.Logf("natsjobs: record %s: %v", e.Key(), err)
		return
	}
	s.remember(e.Key(), rec)
}

// remember keeps a record and tells the job's subscribers.
func (s *Service) remember(id string, rec Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.records[id]; ok && old.Status.State.Finished() && !rec.Status.State.Finished() {
		return // an older write arriving late
	}
	s.records[id] = rec
	// Progress (core NATS) may overtake the watcher's record changes: a
	// "queued" record arriving after the first progress message is the
	// older news, so only a finished record ends the live entry. (A job
	// given back to the queue keeps its last progress until it runs again
	// or ends.)
	if rec.Status.State.Finished() {
		delete(s.live, id)
	}
	s.forget()
	s.notify(id, jobs.Event{Status: s.statusLocked(rec)})
}

// forget drops the oldest finished records from the mirror beyond Keep
// (s.mu held); Get still reads them from the bucket.
func (s *Service) forget() {
	var done []Record
	for _, r := range s.records {
		if r.Status.State.Finished() {
			done = append(done, r)
		}
	}
	if len(done) <= s.cfg.Keep {
		return
	}
	sort.Slice(done, func(a, b int) bool { return finishedAt(done[a]).Before(finishedAt(done[b])) })
	for _, r := range done[:len(done)-s.cfg.Keep] {
		delete(s.records, r.Status.ID)
	}
}

func finishedAt(r Record) time.Time {
	if r.Status.Finished != nil {
		return *r.Status.Finished
	}
	return r.Status.Created
}

// onProgress takes a running job's progress message.
func (s *Service) onProgress(m *nats.Msg) {
	var pm ProgressMsg
	if err := json.Unmarshal(m.Data, &pm); err != nil {
		return
	}
	id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec, ok := s.records[id]; ok && rec.Status.State.Finished() {
		return // late: the record says it ended
	}
	if pm.Status.State.Finished() {
		delete(s.live, id)
		s.notify(id, jobs.Event{Status: pm.Status})
		return
	}
	l := s.live[id]
	if l == nil {
		l = &liveJob{}
		s.live[id] = l
	}
	l.status = pm.Status
	if pm.Preview != nil {
		l.preview = pm.Preview
	}
	s.notify(id, jobs.Event{Status: pm.Status, Preview: pm.Preview})
}

// notify sends an event to a job's subscribers without waiting for slow
// ones; a final status ends them (s.mu held).
func (s *Service) notify(id string, ev jobs.Event) {
	subs := s.subs[id]
	if len(subs) == 0 {
		return
	}
	final := ev.Status.State.Finished()
	for _, sub := range subs {
		if final {
			sub.end(ev)
		} else {
			select {
			case sub.ch <- ev:
			default:
			}
		}
	}
	if final {
		delete(s.subs, id)
	}
}

// end sends the final event (making room for it) and closes the channel.
func (sub *subscriber) end(ev jobs.Event) {
	if sub.done {
		return
	}
	select {
	case sub.ch <- ev:
	default:
		select {
		case <-sub.ch:
		default:
		}
		select {
		case sub.ch <- ev:
		default:
		}
	}
	sub.done = true
	close(sub.ch)
}

// statusLocked is a record's status for the API: with the running job's
// latest progress and the queue position (s.mu held).
func (s *Service) statusLocked(rec Record) jobs.Status {
	st := rec.Status
	switch st.State {
	case jobs.Running:
		if l := s.live[st.ID]; l != nil && l.status.State == jobs.Running {
			st.Batch, st.Stage, st.Step, st.Steps = l.status.Batch, l.status.Stage, l.status.Step, l.status.Steps
			st.ETA, st.Progress = l.status.ETA, l.status.Progress
		}
	case jobs.Queued:
		st.Position = 1
		for id, r := range s.records {
			if id != st.ID && r.Model == rec.Model && r.Status.State == jobs.Queued && ahead(r, rec) {
				st.Position++
			}
		}
	}
	return st
}

// ahead reports whether queued job a runs before b: by stream sequence
// when both are published, else by creation.
func ahead(a, b Record) bool {
	if a.Seq != 0 && b.Seq != 0 {
		return a.Seq < b.Seq
	}
	if !a.Status.Created.Equal(b.Status.Created) {
		return a.Status.Created.Before(b.Status.Created)
	}
	return a.Status.ID < b.Status.ID
}

func (s *Service) withLive(rec Record) jobs.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked(rec)
}

// get reads a job's record from the bucket, or from the mirror while the
// bucket does not answer.
func (s *Service) get(id string) (Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec, rev, err := loadRecord(ctx, s.state, id)
	if err == nil && rev == 0 {
		return rec, jobs.ErrNotFound
	}
	if err != nil {
		s.mu.Lock()
		r, ok := s.records[id]
		s.mu.Unlock()
		if ok {
			return r, nil
		}
		return rec, err
	}
	return rec, nil
}

// Get implements jobs.Service.
func (s *Service) Get(id string) (jobs.Status, error) {
	if !validToken.MatchString(id) {
		return jobs.Status{}, jobs.ErrNotFound
	}
	rec, err := s.get(id)
	if err != nil {
		return jobs.Status{}, err
	}
	return s.withLive(rec), nil
}

// List implements jobs.Service: the queued and running jobs and the
// latest Keep finished ones the service has seen, oldest first.
func (s *Service) List() []jobs.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]jobs.Status, 0, len(s.records))
	for _, r := range s.records {
		out = append(out, s.statusLocked(r))
	}
	sort.SliceStable(out, func(a, b int) bool {
		if out[a].Created.Equal(out[b].Created) {
			return out[a].ID < out[b].ID
		}
		return out[a].Created.Before(out[b].Created)
	})
	return out
}

// queued counts the model's waiting jobs (s.mu held).
func (s *Service) queuedLocked(model string) int {
	n := 0
	for id, r := range s.records {
		// A job whose progress arrives is running, even while the
		// watcher has not yet brought its record's change.
		if r.Status.State == jobs.Queued && s.live[id] == nil && (model == "" || r.Model == model) {
			n++
		}
	}
	return n
}

// checkQueue refuses a job when the model's queue is full, estimating
// when a place frees up from the recent jobs' durations.
func (s *Service) checkQueue(_ context.Context, model string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.queuedLocked(model)
	if n < s.cfg.MaxQueue {
		return nil
	}
	var total time.Duration
	var count int
	for _, r := range s.records {
		st := r.Status
		if st.State == jobs.Done && st.Started != nil && st.Finished != nil {
			total += st.Finished.Sub(*st.Started)
			count++
		}
	}
	mean := 10 * time.Second
	if count > 0 {
		mean = total / time.Duration(count)
	}
	return &jobs.QueueFullError{Queued: n, RetryAfter: max(mean, time.Second)}
}

// Cancel implements jobs.Service: a queued job is recorded cancelled (a
// worker that takes it drops it); a running one is marked
// CancelRequested and told to stop (its worker records it cancelled
// within a step; should the worker have died, the job's next delivery
// ends it cancelled instead of running it again).
func (s *Service) Cancel(id string) (jobs.Status, error) {
	if !validToken.MatchString(id) {
		return jobs.Status{}, jobs.ErrNotFound
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	found, changed := true, false
	rec, err := updateRecord(ctx, s.state, id, func(r *Record, exists bool) error {
		found, changed = exists, false
		switch {
		case !exists || r.Status.State.Finished():
			return errUnchanged
		case r.Status.State == jobs.Running:
			if r.CancelRequested {
				return errUnchanged
			}
			r.CancelRequested = true
			return nil
		}
		now := time.Now().UTC()
		r.Status.State, r.Status.Finished = jobs.Cancelled, &now
		changed = true
		return nil
	})
	switch {
	case err != nil:
		return jobs.Status{}, err
	case !found:
		return jobs.Status{}, jobs.ErrNotFound
	case changed:
		s.remember(id, rec)
	case rec.Status.State == jobs.Running:
		if err := s.control(id, "cancel"); err != nil {
			return jobs.Status{}, err
		}
	default:
		return s.withLive(rec), jobs.ErrFinished
	}
	return s.withLive(rec), nil
}

// control sends "cancel" or "skip" to the worker running a job.
func (s *Service) control(id, what string) error {
	if err := s.nc.Publish(s.cfg.Names.ControlSubject(id), []byte(what)); err != nil {
		return err
	}
	return s.nc.FlushTimeout(5 * time.Second)
}

// Skip implements jobs.Service.
func (s *Service) Skip(id string) error {
	st, err := s.Get(id)
	if err != nil {
		return err
	}
	if st.State == jobs.Running {
		return s.control(id, "skip")
	}
	return nil
}

// Subscribe implements jobs.Service.
func (s *Service) Subscribe(ctx context.Context, id string) (<-chan jobs.Event, error) {
	if !validToken.MatchString(id) {
		return nil, jobs.ErrNotFound
	}
	sub := &subscriber{ch: make(chan jobs.Event, 16)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, jobs.ErrClosed
	}
	s.subs[id] = append(s.subs[id], sub)
	s.mu.Unlock()
	// Registered first, read second: an end in between is not missed.
	rec, err := s.get(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.dropLocked(id, sub)
		return nil, err
	}
	if sub.done {
		return sub.ch, nil
	}
	st := s.statusLocked(rec)
	if st.State.Finished() {
		s.dropLocked(id, sub)
		sub.end(jobs.Event{Status: st})
		return sub.ch, nil
	}
	ev := jobs.Event{Status: st}
	if l := s.live[id]; l != nil {
		ev.Preview = l.preview
	}
	select {
	case sub.ch <- ev:
	default:
	}
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		if !sub.done {
			s.dropLocked(id, sub)
			sub.done = true
			close(sub.ch)
		}
	}()
	return sub.ch, nil
}

// dropLocked removes a subscriber (s.mu held).
func (s *Service) dropLocked(id string, sub *subscriber) {
	subs := s.subs[id]
	for i, x := range subs {
		if x == sub {
			s.subs[id] = append(subs[:i], subs[i+1:]...)
			break
		}
	}
	if len(s.subs[id]) == 0 {
		delete(s.subs, id)
	}
}

// Image implements jobs.Service: image n of a job from the object store.
func (s *Service) Image(id string, n int) ([]byte, error) {
	if !validToken.MatchString(id) || n < 0 {
		return nil, jobs.ErrNotFound
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b []byte
	missing := false
	err := retry(ctx, func(c context.Context) error {
		var err error
		b, err = s.results.GetBytes(c, ImageName(id, n))
		if missing = errors.Is(err, jetstream.ErrObjectNotFound); missing {
			return nil
		}
		return err
	})
	if err == nil && missing {
		if _, gerr := s.get(id); gerr != nil {
			return nil, gerr
		}
		return nil, jobs.ErrNoImage
	}
	return b, err
}

// Current implements jobs.Service: the running job that started first
// among those this service hears about, with its latest preview, and the
// jobs waiting.
func (s *Service) Current() (jobs.Status, []byte, int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cur *liveJob
	for _, l := range s.live {
		if cur == nil || startedBefore(l.status, cur.status) {
			cur = l
		}
	}
	queued := s.queuedLocked(s.cfg.Model)
	if cur == nil {
		return jobs.Status{}, nil, queued, false
	}
	return cur.status, cur.preview, queued, true
}

func startedBefore(a, b jobs.Status) bool {
	if a.Started == nil || b.Started == nil {
		return a.ID < b.ID
	}
	return a.Started.Before(*b.Started)
}

// Close implements jobs.Service for this front end: it stops following
// the jobs and ends the subscriptions; the jobs themselves go on (they
// belong to the deployment, not to one front end).
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for id, subs := range s.subs {
		for _, sub := range subs {
			if !sub.done {
				sub.done = true
				close(sub.ch)
			}
		}
		delete(s.subs, id)
	}
	s.mu.Unlock()
	if s.prog != nil {
		s.prog.Unsubscribe()
	}
	if s.stop != nil {
		s.stop()
		select {
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
