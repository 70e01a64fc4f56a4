package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/internal/testengine"
	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
	"github.com/sdxl-go/sdxl/natsjobs"
	"github.com/sdxl-go/sdxl/natsjobs/natsjobstest"
	"github.com/sdxl-go/sdxl/sdxl"
)

// testServer is a server over the bundled model on 127.0.0.1:0.
type testServer struct {
	*httptest.Server
	jobs jobs.Service
}

// overNATS reports whether the tests run over a NATS deployment
// (TestAPIOverNATS sets SDXL_TEST_JOBS=nats for its child run).
func overNATS() bool { return os.Getenv("SDXL_TEST_JOBS") == "nats" }

// newTestServer starts a server; edit adjusts its config (Jobs is set).
// Its jobs run in process (jobs.Local), or with SDXL_TEST_JOBS=nats on a
// NATS worker behind a natsjobs.Service front end.
func newTestServer(t testing.TB, jc jobs.Config, edit func(*Config)) *testServer {
	t.Helper()
	e := testengine.Bundled(t, sdxl.Options{MemoryBudget: -1})
	limits := jobspec.Limits{MaxPixels: 1024 * 1024, MaxSteps: 1000, MaxImages: 8}
	r := jobs.NewRunner(context.Background(), e, jobs.RunnerOptions{Device: "cpu", DType: "F32",
		Version: "sdxl-run test", BaseName: "sdxl-small-base", Env: jobspec.Env{Limits: limits}})
	var l jobs.Service
	if overNATS() {
		d := natsjobstest.Start(t, natsjobs.WorkerConfig{PreviewEvery: jc.PreviewEvery, DrainTimeout: 100 * time.Millisecond},
			natsjobs.ServiceConfig{MaxQueue: jc.MaxQueue, Keep: jc.Keep}, r)
		l = d.Service
	} else {
		l = jobs.NewLocal(jc, r)
	}
	cfg := Config{Jobs: l, Version: "sdxl-run test", Limits: limits, Models: func() []Model {
		return []Model{{Role: "base", Name: "sdxl-small-base", File: "sdxl-small-base", Hash: "bf141bf22d", SHA256: "bf141bf22df4" + strings.Repeat("0", 52)}}
	}}
	if edit != nil {
		edit(&cfg)
	}
	ts := &testServer{Server: httptest.NewServer(New(cfg)), jobs: l}
	t.Cleanup(func() {
		l.Close(context.Background())
		ts.Close()
	})
	return ts
}

// do sends a request and decodes a JSON answer into out (when not nil).
func (ts *testServer) do(t testing.TB, method, path, body string, hdr map[string]string, out any) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, path, res.StatusCode, b, err)
		}
	}
	res.Body = io.NopCloser(bytes.NewReader(b))
	return res
}

// detail is an error answer.
type detail struct {
	Detail string `json:"detail"`
}

// expectDetail checks a {"detail"} answer's code and that it names want.
func expectDetail(t *testing.T, ts *testServer, method, path, body string, code int, want string) {
	t.Helper()
	var d detail
	res := ts.do(t, method, path, body, nil, &d)
	if res.StatusCode != code || !strings.Contains(d.Detail, want) {
		t.Errorf("%s %s %.80s: %d %q, want %d naming %q", method, path, body, res.StatusCode, d.Detail, code, want)
	}
}

// pngOf decodes a base64 PNG.
func pngOf(t testing.TB, b64 string) image.Image {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// testPNG is a base64 PNG of w x h pixels.
func testPNG(w, h int) string {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(x * 4), uint8(y * 4), 128, 255})
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// waitRunning polls until a job runs.
func waitRunning(t *testing.T, ts *testServer, id string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if st, _ := ts.jobs.Get(id); st.State == jobs.Running && st.Step > 0 {
			return
		}
	}
	t.Fatalf("job %s never ran", id)
}

// submit queues a native job and returns its status.
func submit(t *testing.T, ts *testServer, body string) jobs.Status {
	t.Helper()
	var st jobs.Status
	res := ts.do(t, "POST", "/v1/jobs", body, nil, &st)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/jobs: %d", res.StatusCode)
	}
	return st
}

const slowJob = `{"prompt": "slow", "width": 128, "height": 128, "steps": 1000}`
