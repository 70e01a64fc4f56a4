package natsjobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
)

// delivery is one delivery of a job message to this worker.
type delivery struct {
	msg  jetstream.Msg
	id   string
	meta *jetstream.MsgMetadata
	// started marks this attempt in the record (its Started time).
	started time.Time
}

// verdict is what a delivery's record says to do.
type verdict int

const (
	runIt   verdict = iota
	settled         // done, failed or cancelled already: acknowledge
	invalid         // the job cannot run: failed once, terminated
	givenUp         // out of deliveries: failed, terminated
	notOurs         // another worker's attempt: leave the record
	dropped         // cancelled while it was not running here: acknowledge
)

// handle takes one delivery to its end: acknowledged (its result or
// final state recorded), terminated (failed for good) or given back.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	if err != nil || id == "" {
		w.cfg.Logf("worker %s: a message without a job id on %s: dropped", w.cfg.ID, msg.Subject())
		msg.Term()
		return
	}
	d := &delivery{msg: msg, id: id, meta: meta, started: time.Now().UTC().Round(0)}
	octx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	spec, prepErr := DecodeSpec(msg.Data())
	var p *jobs.Prepared
	if prepErr == nil {
		p, prepErr = w.r.Prepare(spec)
	}
	ctl, err := w.listen(id)
	if err != nil {
		w.cfg.Logf("job %s: its control subject: %v; given back", id, err)
		msg.NakWithDelay(w.cfg.RetryDelay)
		return
	}
	defer ctl.close()
	var v verdict
	rec, err := w.update(octx, id, func(r *Record, exists bool) error {
		if !exists {
			*r = w.newRecord(d, spec)
		}
		v = w.begin(r, d, p, prepErr)
		if v == settled {
			return errUnchanged
		}
		return nil
	})
	if err != nil {
		w.cfg.Logf("job %s: its record: %v; given back", id, err)
		msg.NakWithDelay(w.cfg.RetryDelay)
		return
	}
	switch v {
	case settled:
		w.cfg.Logf("job %s: already %s: acknowledged", id, rec.Status.State)
		w.ack(octx, d)
	case invalid, givenUp:
		w.cfg.Logf("job %s: failed: %s", id, rec.Status.Error)
		w.publishFinal(rec)
		w.term(octx, d)
	case dropped:
		w.cfg.Logf("job %s: cancelled before this delivery: acknowledged, not run", id)
		w.publishFinal(rec)
		w.ack(octx, d)
	default:
		w.runJob(ctx, d, p, rec, ctl)
	}
}

// newRecord is the record of a job that has none (published to the
// stream directly).
func (w *Worker) newRecord(d *delivery, spec jobspec.Spec) Record {
	st := jobs.Status{ID: d.id, State: jobs.Queued, Created: d.meta.Timestamp.UTC(), Batches: max(spec.NIter, 1),
		Spec: spec.Record()}
	return Record{Status: st, Model: w.cfg.Model, Seq: d.meta.Sequence.Stream}
}

// begin decides what to do with a delivery from its record, and edits
// the record accordingly: the job failed (invalid, out of deliveries) or
// running here.
func (w *Worker) begin(r *Record, d *delivery, p *jobs.Prepared, prepErr error) verdict {
	switch {
	case r.Status.State.Finished():
		return settled
	case r.CancelRequested:
		now := time.Now().UTC()
		r.Status.State, r.Status.Finished = jobs.Cancelled, &now
		return dropped
	case prepErr != nil:
		w.fail(r, prepErr.Error())
		r.LastError = prepErr.Error()
		return invalid
	case r.Attempts >= w.cfg.MaxDeliveries:
		last := r.LastError
		if last == "" {
			last = "the worker stopped without an answer"
		}
		w.fail(r, fmt.Sprintf("gave up after %d attempts: %s", r.Attempts, last))
		return givenUp
	}
	st := &r.Status
	if r.Status.State != jobs.Running || r.Worker != w.cfg.ID || !startedAt(st, d.started) {
		r.Attempts++
	}
	t := d.started
	st.State, st.Started, st.Finished, st.Error, st.Images, st.Progress = jobs.Running, &t, nil, "", nil, 0
	st.Warnings, st.Batches, st.Spec = p.Warnings, p.Spec.NIter, p.Spec.Record()
	r.Worker, r.Model, r.Seq = w.cfg.ID, w.cfg.Model, d.meta.Sequence.Stream
	return runIt
}

func startedAt(st *jobs.Status, t time.Time) bool { return st.Started != nil && st.Started.Equal(t) }

// fail marks a record failed with msg (LastError stays the attempt's).
func (w *Worker) fail(r *Record, msg string) {
	now := time.Now().UTC()
	r.Status.State, r.Status.Error, r.Status.Finished = jobs.Failed, msg, &now
	r.Worker = w.cfg.ID
}

// ours reports whether r is this delivery's running attempt.
func (w *Worker) ours(r *Record, d *delivery) bool {
	return r.Status.State == jobs.Running && r.Worker == w.cfg.ID && startedAt(&r.Status, d.started)
}

// ack acknowledges a delivery (confirmed by the server, retried).
func (w *Worker) ack(ctx context.Context, d *delivery) {
	err := retry(ctx, func(c context.Context) error { return d.msg.DoubleAck(c) })
	if err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		// It comes back after AckWait and is acknowledged then, unrun.
		w.cfg.Logf("job %s: acknowledging: %v", d.id, err)
	}
}

// term ends a delivery for good: the job is not tried again.
func (w *Worker) term(ctx context.Context, d *delivery) {
	err := retry(ctx, func(c context.Context) error { return d.msg.TermWithReason("failed") })
	if err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		w.cfg.Logf("job %s: terminating: %v", d.id, err)
	}
}

// publishFinal sends a record's final status on the job's progress
// subject.
func (w *Worker) publishFinal(r Record) {
	if err := w.publish(ProgressMsg{Status: r.Status}, r.Status.ID); err != nil {
		w.cfg.Logf("job %s: its final status: %v", r.Status.ID, err)
	}
}

// publish sends a progress message (buffered by the client while it
// reconnects; a lost one is followed by the next).
func (w *Worker) publish(m ProgressMsg, id string) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return w.nc.Publish(w.cfg.Names.ProgressSubject(id), b)
}
