//go:build unix

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/sdxl/bundled"
)

// signalHook parses SDXL_RUN_TEST_SIGNAL ("STAGE:INT|TERM:DELAY_MS") into
// a stage hook that, when the run reaches STAGE, sends the process the
// signal after the delay (so that it lands inside the stage's work; with
// no delay, at once and before the stage goes on) and prints the time it
// did so to stderr.
func signalHook(spec string) func(string) {
	parts := strings.Split(spec, ":")
	sig := syscall.SIGINT
	if parts[1] == "TERM" {
		sig = syscall.SIGTERM
	}
	delay, _ := strconv.Atoi(parts[2])
	return func(stage string) {
		if stage != parts[0] {
			return
		}
		send := func() {
			fmt.Fprintf(os.Stderr, "test: sent %v at %d\n", sig, time.Now().UnixNano())
			syscall.Kill(os.Getpid(), sig)
		}
		if delay == 0 {
			// At the stage's start: let the handler see the signal before
			// the stage goes on.
			send()
			time.Sleep(200 * time.Millisecond)
			return
		}
		go func() {
			time.Sleep(time.Duration(delay) * time.Millisecond)
			send()
		}()
	}
}

// TestCLISignals runs sdxl-run (this test binary as the command) at
// 1024x1024 on the CPU and signals it during the text encoding, inside a
// denoising step, inside the VAE decode and while it writes: it exits with
// 130 (SIGINT) or 143 (SIGTERM) within 5 seconds of the signal and leaves
// no file.
func TestCLISignals(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	if testing.Short() {
		t.Skip("runs sdxl-run at 1024x1024 four times")
	}
	for _, c := range []struct {
		spec string
		code int
	}{
		{"text:INT:0", 130},
		{"base:TERM:1000", 143}, // inside the first UNet step
		{"vae:INT:300", 130},    // inside the decode
		{"write:TERM:0", 143},
	} {
		t.Run(c.spec, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "--prompt", "a cat", "--width", "1024", "--height", "1024", "--steps", "1",
				"--seed", "1", "--quiet", "--out", filepath.Join(dir, "cat.png"), "--save-latents", filepath.Join(dir, "cat.safetensors"))
			cmd.Env = append(os.Environ(), "SDXL_RUN_CLI=1", "SDXL_RUN_TEST_SIGNAL="+c.spec)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var sent int64
			var lines []string
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				lines = append(lines, sc.Text())
				if v, ok := strings.CutPrefix(sc.Text(), "test: sent "); ok {
					f := strings.Fields(v)
					sent, _ = strconv.ParseInt(f[len(f)-1], 10, 64)
				}
			}
			err = cmd.Wait()
			exited := time.Now()
			code := cmd.ProcessState.ExitCode()
			if sent == 0 {
				t.Fatalf("the signal was never sent (exit %d, %v): %q", code, err, lines)
			}
			took := exited.Sub(time.Unix(0, sent))
			t.Logf("exit %d %v after the signal: %q", code, took.Round(time.Millisecond), lines)
			if code != c.code || took > 5*time.Second {
				t.Errorf("exit %d after %v, want %d within 5s", code, took, c.code)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("files left behind: %v", ents)
			}
		})
	}
}
