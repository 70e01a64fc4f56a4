package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
)

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"detail":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
	w.Write([]byte("\n"))
}

// writeDetail answers an error the way A1111 (FastAPI) does:
// {"detail": "..."}.
func writeDetail(w http.ResponseWriter, code int, detail string) {
	writeJSON(w, code, map[string]string{"detail": detail})
}

// readBody reads a request body within the server's limit.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			writeDetail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over the limit of %d bytes", mb.Limit))
		} else {
			writeDetail(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		}
		return nil, false
	}
	return b, true
}

// errorStatus maps a job error to an HTTP status and a message.
func errorStatus(err error) (int, string) {
	var fe *jobspec.FieldError
	var qf *jobs.QueueFullError
	switch {
	case errors.As(err, &fe):
		return http.StatusUnprocessableEntity, fe.Error()
	case errors.As(err, &qf):
		return http.StatusTooManyRequests, qf.Error()
	case errors.Is(err, jobs.ErrNotFound), errors.Is(err, jobs.ErrNoImage):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, jobs.ErrFinished):
		return http.StatusConflict, err.Error()
	case errors.Is(err, jobs.ErrClosed), errors.Is(err, jobs.ErrUnavailable):
		return http.StatusServiceUnavailable, err.Error()
	}
	return http.StatusInternalServerError, err.Error()
}

// unavailableRetry is the Retry-After of a front end without a worker:
// workers advertise themselves every few seconds once started.
const unavailableRetry = "10"

// setRetryAfter adds Retry-After to a queue-full answer and to one of a
// front end without a live worker.
func setRetryAfter(w http.ResponseWriter, err error) {
	var qf *jobs.QueueFullError
	switch {
	case errors.As(err, &qf):
		w.Header().Set("Retry-After", strconv.Itoa(int(max(qf.RetryAfter.Round(time.Second), time.Second)/time.Second)))
	case errors.Is(err, jobs.ErrUnavailable):
		w.Header().Set("Retry-After", unavailableRetry)
	}
}

// writeError answers a job error with {"detail": ...}.
func writeError(w http.ResponseWriter, err error) {
	code, msg := errorStatus(err)
	setRetryAfter(w, err)
	writeDetail(w, code, msg)
}
