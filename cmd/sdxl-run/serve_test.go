//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/sdxl/bundled"
)

// startServe runs `sdxl-run serve` (this test binary as the command) on
// 127.0.0.1:0 and returns it with its printed URL.
func startServe(t *testing.T, args ...string) (*exec.Cmd, string, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "SDXL_RUN_CLI=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("serve printed nothing: %v\n%s", err, stderr.String())
	}
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("no URL in %q", line)
	}
	go io.Copy(io.Discard, out)
	return cmd, strings.Fields(line[i:])[0], &stderr
}

func post(t *testing.T, url, body string) map[string]any {
	t.Helper()
	res, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return out
}

// TestServeSignals: SIGINT or SIGTERM while a job runs cancels it within
// a step, writes no partial file, and the server exits 0; the finished
// job's image is in --output-dir.
func TestServeSignals(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			cmd, url, stderr := startServe(t, "--output-dir", dir)
			res := post(t, url+"sdapi/v1/txt2img", `{"prompt": "done", "width": 64, "height": 64, "steps": 2}`)
			if imgs, _ := res["images"].([]any); len(imgs) != 1 {
				t.Fatalf("first job: %v", res)
			}
			if sig == syscall.SIGINT {
				checkRepeats(t, res["images"].([]any)[0].(string))
			}
			job := post(t, url+"v1/jobs", `{"prompt": "slow", "width": 256, "height": 256, "steps": 150}`)
			id, _ := job["id"].(string)
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				r, err := http.Get(url + "v1/jobs/" + id)
				if err != nil {
					t.Fatal(err)
				}
				var st map[string]any
				json.NewDecoder(r.Body).Decode(&st)
				r.Body.Close()
				if st["state"] == "running" && st["step"] != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the job never ran: %v", st)
				}
			}
			sent := time.Now()
			cmd.Process.Signal(sig)
			err := cmd.Wait()
			took := time.Since(sent)
			if code := cmd.ProcessState.ExitCode(); code != 0 || took > 5*time.Second {
				t.Errorf("exit %d (%v) %v after %v; stderr:\n%s", code, err, took.Round(time.Millisecond), sig, stderr)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "*"))
			if len(files) != 1 || !strings.HasSuffix(files[0], "-0.png") {
				t.Errorf("output folder after the signal: %v (want the finished image only)", files)
			}
		})
	}
}

// checkRepeats: `sdxl-run --from-png` of a server's image makes the same
// pixels (the parameters chunk says everything the run needs).
func checkRepeats(t *testing.T, b64 string) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src, again := filepath.Join(dir, "served.png"), filepath.Join(dir, "again.png")
	os.WriteFile(src, b, 0o644)
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--from-png", src, "--out", again, "--quiet"}, io.Discard, &stderr); code != 0 {
		t.Fatalf("--from-png of a served image: exit %d: %s", code, stderr.String())
	}
	if !samePixels(t, decodePNG(t, src), decodePNG(t, again)) {
		t.Errorf("--from-png of a served image made other pixels")
	}
}

func samePixels(t *testing.T, a, b image.Image) bool {
	if a.Bounds() != b.Bounds() {
		return false
	}
	for y := a.Bounds().Min.Y; y < a.Bounds().Max.Y; y++ {
		for x := a.Bounds().Min.X; x < a.Bounds().Max.X; x++ {
			if a.At(x, y) != b.At(x, y) {
				return false
			}
		}
	}
	return true
}

// TestServeRefusals: a non-loopback address needs a key; bad flags are
// usage errors (exit 2) before any model loads.
func TestServeRefusals(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "0.0.0.0:0"}, "--api-key"},
		{[]string{"--listen", "7860"}, "HOST:PORT"},
		{[]string{"--max-queue", "0"}, "--max-queue 0"},
		{[]string{"--output-dir", "/nonexistent/folder"}, "--output-dir"},
		{[]string{"--nats", "nats://127.0.0.1:4222", "--model", "m", "--device", "cuda"}, "--device, --model with --nats"},
		{[]string{"--nats", "nats://127.0.0.1:4222", "--output-dir", "."}, "--output-dir with --nats"},
		{[]string{"--nats", "nats://127.0.0.1:4222", "--model-id", "a b"}, `--model-id "a b"`},
		{[]string{"--model-id", "m"}, "go with --nats"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		cmd := exec.Command(os.Args[0], append([]string{"serve"}, c.args...)...)
		cmd.Env = append(os.Environ(), "SDXL_RUN_CLI=1")
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), c.want) {
			t.Errorf("serve %v: exit %d, %q (want 2 naming %s)", c.args, code, out, c.want)
		}
	}
}

// TestServeOverNATS: `sdxl-run serve --nats` in front of an `sdxl-run
// worker` answers A1111 requests with the pixels of a local run, lists
// the worker's model, refuses nothing it should take, and a SIGTERM stops
// the front end (exit 0) while the worker goes on. An unreachable NATS
// server is exit 1 naming the URL.
func TestServeOverNATS(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	loras := t.TempDir()
	os.WriteFile(filepath.Join(loras, "pixel-art.safetensors"), []byte("listed, not read"), 0o644)
	wk := startWorkerCmd(t, "--lora-dir", loras)
	cmd, url, stderr := startServe(t, "--nats", wk.url)
	var models []map[string]any
	for deadline := time.Now().Add(30 * time.Second); len(models) == 0; time.Sleep(20 * time.Millisecond) {
		r, err := http.Get(url + "sdapi/v1/sd-models")
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(r.Body).Decode(&models)
		r.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no model listed; serve:\n%s\nworker:\n%s", stderr, wk.stderr)
		}
	}
	if models[0]["model_name"] == nil {
		t.Errorf("models: %v", models)
	}
	var ls []map[string]any
	if r, err := http.Get(url + "sdapi/v1/loras"); err == nil {
		json.NewDecoder(r.Body).Decode(&ls)
		r.Body.Close()
	}
	if len(ls) != 1 || ls[0]["name"] != "pixel-art" {
		t.Errorf("the workers' LoRAs over NATS: %v", ls)
	}
	res := post(t, url+"sdapi/v1/txt2img", `{"prompt": "a red cube", "width": 64, "height": 64, "steps": 2, "seed": 5}`)
	imgs, _ := res["images"].([]any)
	if len(imgs) != 1 {
		t.Fatalf("txt2img over NATS: %v\n%s\n%s", res, stderr, wk.stderr)
	}
	b, _ := base64.StdEncoding.DecodeString(imgs[0].(string))
	dir := t.TempDir()
	served, local := filepath.Join(dir, "served.png"), filepath.Join(dir, "local.png")
	os.WriteFile(served, b, 0o644)
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"--prompt", "a red cube", "--width", "64", "--height", "64", "--steps", "2",
		"--seed", "5", "--guidance", "7", "--out", local, "--quiet"}, io.Discard, &errb); code != 0 {
		t.Fatalf("local run: %d %s", code, errb.String())
	}
	if !samePixels(t, decodePNG(t, served), decodePNG(t, local)) {
		t.Errorf("the image served over NATS differs from a local run")
	}
	bad := post(t, url+"sdapi/v1/txt2img", `{"prompt": "x", "width": 65}`)
	if d, _ := bad["detail"].(string); !strings.Contains(d, "width") {
		t.Errorf("a bad job over NATS: %v", bad)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil || cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("serve --nats after SIGTERM: %v\n%s", err, stderr)
	}
	if wk.cmd.ProcessState != nil {
		t.Errorf("the worker stopped with the front end")
	}
	c := exec.Command(os.Args[0], "serve", "--listen", "127.0.0.1:0", "--nats", "nats://127.0.0.1:1")
	c.Env = append(os.Environ(), "SDXL_RUN_CLI=1")
	out, _ := c.CombinedOutput()
	if code := c.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "nats://127.0.0.1:1") {
		t.Errorf("unreachable NATS: exit %d %q", code, out)
	}
}
