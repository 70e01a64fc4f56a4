package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/internal/natstest"
	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/natsjobs"
	"github.com/sdxl-go/sdxl/natsjobs/natsjobstest"
)

// TestAPIOverNATS runs this package's tests again, unchanged, with every
// job going through NATS (SDXL_TEST_JOBS=nats: an in-process JetStream
// server, a natsjobs worker on the bundled model, a natsjobs.Service as
// the server's jobs), so that the front end of `sdxl-run serve --nats`
// is held to the same API tests as the in-process one.
func TestAPIOverNATS(t *testing.T) {
	if overNATS() {
		t.Skip("this is the run over NATS")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"-test.count=1", "-test.v"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "SDXL_TEST_JOBS=nats")
	out, err := cmd.CombinedOutput()
	passed := regexp.MustCompile(`(?m)^--- PASS: (\w+)`).FindAllStringSubmatch(string(out), -1)
	var names []string
	for _, m := range passed {
		names = append(names, m[1])
	}
	if err != nil {
		t.Fatalf("the API tests over NATS failed (%v):\n%s", err, tail(string(out), 6000))
	}
	// The API's tests, at least, ran and passed (not skipped).
	for _, want := range []string{"TestTxt2Img", "TestTxt2ImgBadInputs", "TestImg2Img", "TestProgressInterruptSkip",
		"TestListsAndOptions", "TestPNGInfo", "TestOpenWebUIReplay", "TestSillyTavernReplay", "TestOpenAIImages",
		"TestJobsAPI", "TestQueueFullAndCancel", "TestAuth", "TestCORSAndPaths", "TestLoadShort"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s did not pass over NATS", want)
		}
	}
	t.Logf("passed over NATS: %s", strings.Join(names, ", "))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestNoWorker503: a front end over NATS with no live worker answers
// every generation request with 503 naming the missing worker (A1111,
// OpenAI and native jobs alike), queues nothing, and still answers the
// job list.
func TestNoWorker503(t *testing.T) {
	srv := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	svc, err := natsjobs.NewService(ctx, natsjobstest.Connect(t, srv), natsjobs.ServiceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(context.Background()) })
	ts := &testServer{Server: httptest.NewServer(New(Config{Jobs: svc, Version: "sdxl-run test"})), jobs: svc}
	t.Cleanup(ts.Close)
	job := `{"prompt": "a red cube", "width": 64, "height": 64, "steps": 2}`
	for _, path := range []string{"/v1/jobs", "/sdapi/v1/txt2img"} {
		expectDetail(t, ts, "POST", path, job, http.StatusServiceUnavailable, "no worker is running")
	}
	var oa struct {
		Error struct{ Message string } `json:"error"`
	}
	res := ts.do(t, "POST", "/v1/images/generations", `{"prompt": "a red cube", "size": "64x64"}`, nil, &oa)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(oa.Error.Message, "no worker is running") {
		t.Errorf("OpenAI without a worker: %d %q", res.StatusCode, oa.Error.Message)
	}
	if ra := res.Header.Get("Retry-After"); ra != unavailableRetry {
		t.Errorf("503 without a worker: Retry-After %q, want %s", ra, unavailableRetry)
	}
	var list struct{ Jobs []jobs.Status }
	if res := ts.do(t, "GET", "/v1/jobs", "", nil, &list); res.StatusCode != http.StatusOK || len(list.Jobs) != 0 {
		t.Errorf("GET /v1/jobs: %d %v", res.StatusCode, list)
	}
}
