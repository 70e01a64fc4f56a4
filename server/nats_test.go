package server

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
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
