//go:build unix

package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/sdxl/bundled"
)

// TestBatchSignal: SIGTERM during line 2's denoising stops `sdxl-run
// batch` (this test binary as the command) with 143 within 5 seconds,
// line 1's image written and nothing of line 2 or a temporary file; the
// same command then writes lines 2 and 3 only.
func TestBatchSignal(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	in, out := writeJobs(t, 3, 2)
	args := append([]string{"batch", "--in", in, "--out", out}, testDevice()...)
	for i, c := range []struct {
		signal string
		code   int
		files  string
	}{{"line2.base:TERM:0", 143, "00001.png"}, {"", 0, "00001.png 00002.png 00003.png"}} {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "SDXL_RUN_CLI=1", "SDXL_RUN_TEST_SIGNAL="+c.signal)
		start := time.Now()
		b, _ := cmd.CombinedOutput()
		took := time.Since(start)
		if code := cmd.ProcessState.ExitCode(); code != c.code || took > 10*time.Second {
			t.Fatalf("run %d: exit %d after %v, want %d:\n%s", i+1, code, took, c.code, b)
		}
		if got := strings.Join(pngFiles(t, out), " "); got != c.files {
			t.Fatalf("run %d: %s, want %s:\n%s", i+1, got, c.files, b)
		}
		if i == 1 && !strings.Contains(string(b), "3 lines: 2 done, 1 skipped") {
			t.Errorf("resumed run: %s", b)
		}
	}
}
