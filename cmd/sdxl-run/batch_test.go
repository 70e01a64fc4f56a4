package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/sdxl/bundled"
)

// batchCase is one line of the test input and the single sdxl-run runs
// that must make its images (one run per n_iter batch; --num-images for
// batch_size).
type batchCase struct {
	line string
	// files are the line's images, in order; runs the flags of each
	// single run (with --seed added) and the images each makes.
	files []string
	runs  [][]string
	seeds []uint64 // per run; 0: the line's derived seed
}

func batchInput() (string, []batchCase) {
	cases := []batchCase{
		{line: `{"prompt": "a red cube", "seed": 11, "steps": 2, "width": 64, "height": 64}`,
			files: []string{"00001.png"}, runs: [][]string{{"--prompt", "a red cube"}}, seeds: []uint64{11}},
		{line: `# a comment, then a blank line`},
		{line: ``},
		{line: `{"prompt": "no seed given", "steps": 2, "width": 64, "height": 64, "cfg_scale": 7, "negative_prompt": "blur"}`,
			files: []string{"00004.png"}, runs: [][]string{{"--prompt", "no seed given", "--guidance", "7", "--negative-prompt", "blur"}}, seeds: []uint64{0}},
		{line: `{"prompt": "a pair", "seed": 5, "steps": 2, "width": 72, "height": 64, "batch_size": 2}`,
			files: []string{"00005-1.png", "00005-2.png"}, runs: [][]string{{"--prompt", "a pair", "--width", "72", "--num-images", "2"}}, seeds: []uint64{5}},
		{line: `{"prompt": "two batches", "seed": 9, "steps": 3, "width": 64, "height": 64, "n_iter": 2}`,
			files: []string{"00006-1.png", "00006-2.png"}, runs: [][]string{{"--prompt", "two batches", "--steps", "3"}, {"--prompt", "two batches", "--steps", "3"}}, seeds: []uint64{9, 10}},
	}
	var lines []string
	for _, c := range cases {
		lines = append(lines, c.line)
	}
	return strings.Join(lines, "\n") + "\n", cases
}

// pngFiles lists a folder, failing on anything but the expected PNGs'
// kind of name (a temporary file left behind is an error).
func pngFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".png") {
			t.Errorf("unexpected file in the output folder: %s", e.Name())
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// cancelAt is a context whose run is cancelled when it reaches stage.
func cancelAt(stage string) (context.Context, *bool) {
	ctx, cancel := context.WithCancel(context.Background())
	hit := new(bool)
	return context.WithValue(ctx, stageHookKey{}, func(s string) {
		if s == stage {
			*hit = true
			cancel()
		}
	}), hit
}

// TestBatchResume is the acceptance check of `sdxl-run batch` on its own:
// a batch cancelled during line 5's first denoising step writes lines 1
// and 4 and nothing of line 5; run again, it skips them and writes the
// rest; every line has exactly its PNGs, each with the pixels and the
// parameters of a single sdxl-run of the same job, and no temporary file
// is left.
func TestBatchResume(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	dir := t.TempDir()
	input, cases := batchInput()
	in, out := filepath.Join(dir, "jobs.jsonl"), filepath.Join(dir, "out")
	if err := os.WriteFile(in, []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"batch", "--in", in, "--out", out}, testDevice()...)

	ctx, hit := cancelAt("line5.base")
	var stdout, stderr bytes.Buffer
	if code := run(ctx, args, &stdout, &stderr); code != 130 || !*hit {
		t.Fatalf("interrupted batch: exit %d (cancelled: %v), want 130:\n%s", code, *hit, stderr.String())
	}
	if got := pngFiles(t, out); strings.Join(got, " ") != "00001.png 00004.png" {
		t.Fatalf("after the interruption: %v, want lines 1 and 4 only\n%s", got, stderr.String())
	}
	t.Logf("interrupted: %s", stderr.String())

	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("resumed batch: exit %d:\n%s", code, stderr.String())
	}
	if want := "4 lines: 2 done, 2 skipped (already written), 0 failed"; !strings.Contains(stderr.String(), want) {
		t.Errorf("resumed batch's summary: %q, want %q", stderr.String(), want)
	}
	if got := strings.Fields(stdout.String()); len(got) != 4 || filepath.Base(got[0]) != "00005-1.png" {
		t.Errorf("resumed batch printed %v, want the 4 images of lines 5 and 6", got)
	}
	var want []string
	for _, c := range cases {
		want = append(want, c.files...)
	}
	sort.Strings(want)
	if got := pngFiles(t, out); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("after the resumed batch: %v, want %v", got, want)
	}
	for i, c := range cases {
		checkSingleRuns(t, out, i+1, c) // one case a line
	}
	checkRerunSkipsAll(t, args, out)
}

// checkSingleRuns runs each single sdxl-run of a case and compares its
// images with the batch's, pixel for pixel and parameter for parameter.
func checkSingleRuns(t *testing.T, out string, no int, c batchCase) {
	t.Helper()
	dir := t.TempDir()
	n := 0
	for r, flags := range c.runs {
		seed := c.seeds[r]
		if seed == 0 {
			seed = uint64(lineSeed(lineHash(no, []byte(c.line))))
		}
		single := filepath.Join(dir, fmt.Sprintf("single%d.png", r))
		args := append(append(testDevice(), "--quiet", "--seed", fmt.Sprint(seed), "--steps", "2", "--width", "64", "--height", "64", "--out", single), flags...)
		var stderr bytes.Buffer
		if code := run(context.Background(), args, io.Discard, &stderr); code != 0 {
			t.Fatalf("line %d: single run %v: exit %d: %s", no, args, code, stderr.String())
		}
		singles := []string{single}
		if k := len(c.files) / len(c.runs); k > 1 {
			singles = nil
			for i := 1; i <= k; i++ {
				singles = append(singles, strings.TrimSuffix(single, ".png")+fmt.Sprintf("-%d.png", i))
			}
		}
		for _, s := range singles {
			got := filepath.Join(out, c.files[n])
			if !samePixels(t, decodePNG(t, got), decodePNG(t, s)) {
				t.Errorf("line %d: %s has other pixels than a single run (%v)", no, c.files[n], flags)
			}
			if a, b := readParams(t, got), readParams(t, s); a != b {
				t.Errorf("line %d: %s parameters\n%s\nwant (single run)\n%s", no, c.files[n], a, b)
			}
			n++
		}
	}
}

// checkRerunSkipsAll: a third run finds every image written, runs
// nothing and changes no file.
func checkRerunSkipsAll(t *testing.T, args []string, out string) {
	t.Helper()
	before := map[string][]byte{}
	for _, f := range pngFiles(t, out) {
		before[f], _ = os.ReadFile(filepath.Join(out, f))
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 || stdout.Len() != 0 {
		t.Fatalf("third run: exit %d, printed %q: %s", code, stdout.String(), stderr.String())
	}
	if want := "4 lines: 0 done, 4 skipped"; !strings.Contains(stderr.String(), want) {
		t.Errorf("third run: %q, want %q", stderr.String(), want)
	}
	for f, b := range before {
		if after, _ := os.ReadFile(filepath.Join(out, f)); !bytes.Equal(after, b) {
			t.Errorf("third run changed %s", f)
		}
	}
}

// writeJobs writes an input of n equal seedless lines of the given steps
// (64x64) and returns it with the output folder to use.
func writeJobs(t *testing.T, n, steps int) (in, out string) {
	dir := t.TempDir()
	in, out = filepath.Join(dir, "jobs.jsonl"), filepath.Join(dir, "out")
	job := fmt.Sprintf(`{"prompt": "p", "steps": %d, "width": 64, "height": 64}`, steps)
	if err := os.WriteFile(in, []byte(strings.Repeat(job+"\n", n)), 0o644); err != nil {
		t.Fatal(err)
	}
	return in, out
}

// TestBatchEditedInput: a rerun whose line is now another job than the
// one that wrote its image refuses (exit 2 naming the line and the file,
// nothing run) instead of keeping the wrong image; --overwrite runs every
// line again.
func TestBatchEditedInput(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	in, out := writeJobs(t, 2, 1)
	args := append([]string{"batch", "--in", in, "--out", out}, testDevice()...)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("first run: exit %d: %s", code, stderr.String())
	}
	first, _ := os.ReadFile(filepath.Join(out, "00002.png"))
	os.WriteFile(in, []byte(`{"prompt": "p", "steps": 1, "width": 64, "height": 64}`+"\n"+`{"prompt": "q", "steps": 1, "width": 64, "height": 64}`+"\n"), 0o644)
	stdout.Reset()
	stderr.Reset()
	code := run(context.Background(), args, &stdout, &stderr)
	if code != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "1 bad line(s)") ||
		!strings.Contains(stderr.String(), "line 2: "+filepath.Join(out, "00002.png")+" exists but was not made by this job") {
		t.Errorf("edited line 2: exit %d: %s", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), append(args, "--overwrite"), io.Discard, &stderr); code != 0 ||
		!strings.Contains(stderr.String(), "2 lines: 2 done, 0 skipped") {
		t.Fatalf("--overwrite: exit %d: %s", code, stderr.String())
	}
	if again, _ := os.ReadFile(filepath.Join(out, "00002.png")); bytes.Equal(again, first) || readParams(t, filepath.Join(out, "00002.png"))[:2] != "q\n" {
		t.Errorf("--overwrite did not replace line 2's image with the new job's")
	}
	if got := pngFiles(t, out); len(got) != 2 {
		t.Errorf("output folder: %v", got)
	}
}

// TestBatchFailedLine: a line that fails (here: its image appears at its
// path while it runs) is reported by line, the others are written, and
// the exit status is 1.
func TestBatchFailedLine(t *testing.T) {
	if !bundled.Available() {
		t.Skip("built without the bundled model (nobundle)")
	}
	in, out := writeJobs(t, 3, 1)
	ctx := context.WithValue(context.Background(), stageHookKey{}, func(s string) {
		if s == "line2.write" {
			os.WriteFile(filepath.Join(out, "00002.png"), []byte("someone else's"), 0o644)
		}
	})
	var stdout, stderr bytes.Buffer
	code := run(ctx, append([]string{"batch", "--in", in, "--out", out}, testDevice()...), &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "3 lines: 2 done, 0 skipped (already written), 1 failed\n  line 2: ") ||
		!strings.Contains(stderr.String(), "00002.png already exists") {
		t.Errorf("exit %d, stderr:\n%s\nwant 1 with line 2 failed", code, stderr.String())
	}
	if got := pngFiles(t, out); strings.Join(got, " ") != "00001.png 00002.png 00003.png" {
		t.Errorf("output folder: %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "00002.png")); string(b) != "someone else's" {
		t.Errorf("the other file at line 2's path was replaced")
	}
}

// TestBatchRefusals: a bad input or flag is a usage error (exit 2) naming
// the line and field or the flag, and nothing is written.
func TestBatchRefusals(t *testing.T) {
	dir := t.TempDir()
	good := `{"prompt": "x", "steps": 1, "width": 64, "height": 64}`
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o644)
		return p
	}
	in := write("good.jsonl", good+"\n")
	out := filepath.Join(dir, "out")
	// A folder where line 1's image goes: never replaced.
	taken := filepath.Join(dir, "taken")
	os.MkdirAll(filepath.Join(taken, "00001.png"), 0o755)
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"bad JSON", []string{"--in", write("json.jsonl", good+"\n{\"prompt\": \"x\",\n"), "--out", out}, []string{"line 2: malformed JSON"}},
		{"unknown field", []string{"--in", write("field.jsonl", "# jobs\n\n"+good+"\n"+`{"prompt": "x", "stepz": 3}`+"\n"), "--out", out}, []string{"line 4: stepz: unknown field"}},
		{"bad value", []string{"--in", write("value.jsonl", `{"prompt": "x", "width": 65}`+"\n"+good+"\n"+`{"steps": 0}`), "--out", out},
			[]string{"2 bad line(s)", "line 1: width: 65 is not a multiple of 8", "line 3: steps"}},
		{"refiner not loaded", []string{"--in", write("refiner.jsonl", good+"\n"+`{"prompt": "x", "steps": 1, "width": 64, "height": 64, "refiner": true}`), "--out", out}, []string{"line 2: refiner: no refiner is loaded"}},
		{"no jobs", []string{"--in", write("empty.jsonl", "# nothing\n\n"), "--out", out}, []string{"no jobs"}},
		{"missing --in", []string{"--out", out}, []string{"--in: give the jobs file"}},
		{"no such --in", []string{"--in", filepath.Join(dir, "none.jsonl"), "--out", out}, []string{"--in", "none.jsonl"}},
		{"--out a file", []string{"--in", in, "--out", in}, []string{"--out", "not a folder"}},
		{"--out under nothing", []string{"--in", in, "--out", filepath.Join(dir, "no", "out")}, []string{"--out", "does not exist"}},
		{"missing --out", []string{"--in", in}, []string{"--out: give the folder"}},
		{"extra argument", []string{"--in", in, "--out", out, "jobs.jsonl"}, []string{"unexpected argument"}},
		{"--model with --nats", []string{"--in", in, "--out", out, "--nats", "nats://127.0.0.1:1", "--model", "x"}, []string{"--model with --nats"}},
		{"--model-id without --nats", []string{"--in", in, "--out", out, "--model-id", "m"}, []string{"--model-id and --prefix go with --nats"}},
		{"bad --prefix", []string{"--in", in, "--out", out, "--nats", "nats://127.0.0.1:1", "--prefix", "a.b"}, []string{"--prefix"}},
		{"a folder at an image's path", []string{"--in", in, "--out", taken}, []string{"--out", "00001.png: it is a folder"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"batch"}, c.args...), &stdout, &stderr)
			for _, w := range c.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not say %q", stderr.String(), w)
				}
			}
			if code != 2 || stdout.Len() != 0 {
				t.Errorf("exit %d, stdout %q: want 2 and nothing", code, stdout.String())
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("the output folder was created")
			}
		})
	}
}

// TestBatchNoServer: an unreachable --nats server is exit 1 naming it,
// and nothing is written.
func TestBatchNoServer(t *testing.T) {
	in, out := writeJobs(t, 1, 1)
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"batch", "--in", in, "--out", out, "--nats", "nats://127.0.0.1:1"}, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "--nats nats://127.0.0.1:1: cannot connect") {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("the output folder was created")
	}
}

// TestLineSeed: a line without a seed gets one derived from its number
// and text (the same on every run, different for equal lines), and a job
// id the same way.
func TestLineSeed(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "jobs.jsonl")
	os.WriteFile(in, []byte("{\"prompt\": \"x\"}\n{\"prompt\": \"x\"}\n{\"prompt\": \"x\", \"seed\": 3}\n"), 0o644)
	var runs [][]batchLine
	for range 2 {
		lines, bad, err := readBatch(in)
		if err != nil || len(bad) > 0 || len(lines) != 3 {
			t.Fatalf("readBatch: %v %v %v", lines, bad, err)
		}
		runs = append(runs, lines)
	}
	a, b := runs[0][0], runs[0][1]
	if a.spec.Seed == b.spec.Seed || a.id == b.id || a.spec.Seed < 0 || a.spec.Seed >= 1e12 || runs[0][2].spec.Seed != 3 {
		t.Errorf("lines 1 and 2: seeds %d %d, ids %s %s; line 3 seed %d", a.spec.Seed, b.spec.Seed, a.id, b.id, runs[0][2].spec.Seed)
	}
	for i := range runs[0] {
		if runs[0][i].spec.Seed != runs[1][i].spec.Seed || runs[0][i].id != runs[1][i].id {
			t.Errorf("line %d differs between two reads", i+1)
		}
	}
}
