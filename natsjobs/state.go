package natsjobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// errUnchanged, from a change function, leaves the record as it is.
var errUnchanged = errors.New("natsjobs: record unchanged")

// errBadRecord is a record that is not a Record's JSON.
var errBadRecord = errors.New("natsjobs: bad record")

// update changes a job's record with compare-and-set: change gets the
// stored record (exists false and a zero Record when there is none) and
// edits it, or returns errUnchanged to leave it. When another process
// wrote in between, the record is read again and change runs again, so
// change must decide from what it gets. It returns the record as stored.
func (w *Worker) update(ctx context.Context, id string, change func(r *Record, exists bool) error) (Record, error) {
	return updateRecord(ctx, w.state, id, change)
}

// updateRecord is update on the State bucket kv (workers and front ends
// share it).
func updateRecord(ctx context.Context, kv jetstream.KeyValue, id string, change func(r *Record, exists bool) error) (Record, error) {
	for {
		rec, rev, err := loadRecord(ctx, kv, id)
		if err != nil {
			return rec, err
		}
		if err := change(&rec, rev != 0); err != nil {
			if errors.Is(err, errUnchanged) {
				return rec, nil
			}
			return rec, err
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return rec, err
		}
		err = retry(ctx, func(c context.Context) error {
			var err error
			if rev == 0 {
				_, err = kv.Create(c, id, b)
			} else {
				_, err = kv.Update(c, id, b, rev)
			}
			return err
		})
		if !conflict(err) {
			return rec, err
		}
		// Another writer came first (or our own write whose reply was
		// lost in a restart): decide again on what is there now.
	}
}

// load reads a job's record and its revision (0 when there is none).
func (w *Worker) load(ctx context.Context, id string) (Record, uint64, error) {
	return loadRecord(ctx, w.state, id)
}

// loadRecord is load on the State bucket kv.
func loadRecord(ctx context.Context, kv jetstream.KeyValue, id string) (Record, uint64, error) {
	var rec Record
	var rev uint64
	err := retry(ctx, func(c context.Context) error {
		rec, rev = Record{}, 0
		e, err := kv.Get(c, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return fmt.Errorf("%w %s: %v", errBadRecord, id, err)
		}
		rev = e.Revision()
		return nil
	})
	return rec, rev, err
}

func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// retry runs op (each try bounded by a few seconds) until it succeeds,
// fails for good or ctx ends: NATS requests fail for a while when the
// server restarts and the client reconnects.
func retry(ctx context.Context, op func(ctx context.Context) error) error {
	wait := 50 * time.Millisecond
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := op(c)
		cancel()
		if err == nil || permanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// permanent reports an error that trying again does not mend.
func permanent(err error) bool {
	return conflict(err) || errors.Is(err, errBadRecord) || errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, jetstream.ErrMsgAlreadyAckd) || errors.Is(err, jetstream.ErrKeyNotFound)
}

// strictUnmarshal decodes JSON refusing unknown fields.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
