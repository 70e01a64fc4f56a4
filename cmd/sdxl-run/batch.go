package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sdxl-go/sdxl/internal/atomicfile"
	"github.com/sdxl-go/sdxl/internal/regfile"
	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/jobspec"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
)

// batchFlags are the batch command's flags.
type batchFlags struct {
	modelFlags
	in, out, nats, prefix string
	modelID               string
	overwrite, quiet      bool
}

func newBatchFlags(f *batchFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sdxl-run batch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.modelFlags.register(fs)
	fs.StringVar(&f.in, "in", "", "the jobs: one native job JSON a line (the fields of POST /v1/jobs); blank lines and lines starting with # are skipped")
	fs.StringVar(&f.out, "out", "", "folder of the images (created if missing): NNNNN.png for line NNNNN, NNNNN-I.png for its image I when it makes several")
	fs.BoolVar(&f.overwrite, "overwrite", false, "run every line again and replace its images (default: keep the images already written and skip their lines)")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress or per-line notes on stderr (the summary stays)")
	fs.StringVar(&f.nats, "nats", "", "submit the lines to sdxl-run workers over the NATS server with JetStream at this `URL` (nats://HOST:4222) and collect their images, instead of running them here")
	fs.StringVar(&f.prefix, "prefix", "", "with --nats: the deployment's name prefix (streams, buckets, subjects; default SDXL)")
	fs.StringVar(&f.modelID, "model-id", "", "with --nats: the workers' model id to send jobs to (default: the one the live workers serve)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sdxl-run batch --in jobs.jsonl --out DIR [--model PATH] [--refiner PATH] [--lora-dir DIR] [--device cpu|cuda] [--overwrite]\n       sdxl-run batch --in jobs.jsonl --out DIR --nats URL [--prefix SDXL] [--model-id ID]   (on NATS workers)\n\nflags:")
		fs.PrintDefaults()
	}
	return fs
}

// check validates the flags before the input is read.
func (f *batchFlags) check(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usageErr("batch: unexpected argument %q", fs.Arg(0))
	}
	if err := f.modelFlags.check(); err != nil {
		return err
	}
	if f.in == "" {
		return usageErr("--in: give the jobs file (one JSON job a line)")
	}
	if f.out == "" {
		return usageErr("--out: give the folder for the images")
	}
	if f.nats != "" {
		if err := checkFrontEnd(fs, f.modelID, f.prefix); err != nil {
			return err
		}
	} else if f.modelID != "" || f.prefix != "" {
		return usageErr("--model-id and --prefix go with --nats")
	}
	st, err := os.Stat(f.out)
	switch {
	case err == nil && !st.IsDir():
		return usageErr("--out %s: not a folder", f.out)
	case errors.Is(err, os.ErrNotExist):
		if pst, perr := os.Stat(filepath.Dir(f.out)); perr != nil || !pst.IsDir() {
			return usageErr("--out %s: its parent folder %s does not exist", f.out, filepath.Dir(f.out))
		}
	case err != nil:
		return usageErr("--out %v", err)
	}
	return nil
}

// batchLine is one job of the input.
type batchLine struct {
	// no is the line's number in the file (1-based, counting every line),
	// which names its images.
	no   int
	spec jobspec.Spec
	// id is the line's job id with --nats (lineID).
	id string
	// paths are the line's images in the job's order; todo indexes those
	// this run writes (all of them with --overwrite, else the missing).
	paths []string
	todo  []int
}

// maxLineBytes bounds one input line (a job with an input image is a few
// MB of base64), as serve's --max-body bounds a request.
const maxLineBytes = 64 << 20

// readBatch reads and decodes every job of the input. A line without a
// seed (or with -1) gets lineSeed's. The bad lines are returned as
// messages naming the line and the field.
func readBatch(path string) ([]batchLine, []string, error) {
	f, err := regfile.Open(path)
	if err != nil {
		return nil, nil, usageErr("--in %v", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<16)
	var lines []batchLine
	var bad []string
	for no := 1; ; no++ {
		text, err := readLine(br)
		if err != nil && err != io.EOF {
			return nil, nil, usageErr("--in %s: line %d: %v", path, no, err)
		}
		if t := bytes.TrimSpace(text); len(t) > 0 && t[0] != '#' {
			spec, derr := jobspec.Decode(t)
			if derr != nil {
				bad = append(bad, lineError(no, derr))
			} else {
				h := lineHash(no, t)
				if spec.Seed < 0 {
					spec.Seed = lineSeed(h)
				}
				lines = append(lines, batchLine{no: no, spec: spec, id: "batch-" + hex.EncodeToString(h[8:24])})
			}
		}
		if err == io.EOF {
			return lines, bad, nil
		}
	}
}

// readLine reads one line of at most maxLineBytes (io.EOF with the last,
// unterminated one).
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLineBytes {
			return nil, fmt.Errorf("longer than %d bytes", maxLineBytes)
		}
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

// lineHash identifies a line of an input by its number and text. It makes
// two things of a line that must not change between runs:
//
//   - The seed of a line that gives none: a drawn seed would make a
//     resumed batch (or a run on other workers) differ from the first, so
//     the seed is derived instead (below 10^12, like sdxl-run's drawn
//     seeds): the same input always makes the same images, while two
//     equal lines still make different ones. It is in each image's
//     metadata.
//   - The job id of the line with --nats: a rerun submits the same ids,
//     which JetStream deduplicates, and collects the results of the jobs
//     already done instead of running them again.
func lineHash(no int, text []byte) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "sdxl-run batch line %d\n", no)
	h.Write(text)
	return [sha256.Size]byte(h.Sum(nil))
}

// lineSeed is the seed of a line without one (see lineHash).
func lineSeed(h [sha256.Size]byte) int64 {
	return int64(binary.BigEndian.Uint64(h[:8]) % 1_000_000_000_000)
}

// lineError formats a job's error as "line N: field: message".
func lineError(no int, err error) string {
	var fe *jobspec.FieldError
	if errors.As(err, &fe) && fe.Field == "body" {
		return fmt.Sprintf("line %d: %s", no, fe.Message) // the line is the body
	}
	return fmt.Sprintf("line %d: %v", no, err)
}

// badInput is the usage error of an input with bad lines: each named, the
// first ten shown.
func badInput(path string, bad []string) error {
	shown, more := bad, ""
	if len(bad) > 10 {
		shown, more = bad[:10], fmt.Sprintf("\n  ... and %d more", len(bad)-10)
	}
	return usageErr("--in %s: %d bad line(s); nothing was run:\n  %s%s", path, len(bad), strings.Join(shown, "\n  "), more)
}

// linePaths names the images of line no in dir: NNNNN.png for one image,
// NNNNN-1.png ... NNNNN-n.png for several (in the job's order: batch k's
// image j is k*batch_size+j+1).
func linePaths(dir string, no, n int) []string {
	if n == 1 {
		return []string{filepath.Join(dir, fmt.Sprintf("%05d.png", no))}
	}
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("%05d-%d.png", no, i+1))
	}
	return paths
}

// planOutputs names every line's images and picks those to write: the
// missing ones, or all with overwrite. It returns the paths to write, and
// a message for each line whose kept images another job made.
func planOutputs(lines []batchLine, dir string, overwrite bool) (todo, bad []string) {
	for i := range lines {
		l := &lines[i]
		l.paths = linePaths(dir, l.no, l.spec.Images())
		l.todo = nil
		for j, p := range l.paths {
			if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() && !overwrite {
				if err := l.checkKept(j); err != nil {
					bad = append(bad, lineError(l.no, err))
					break
				}
				continue // written by an earlier run
			}
			l.todo = append(l.todo, j)
			todo = append(todo, p)
		}
	}
	return todo, bad
}

// checkKept makes sure that image j, kept from an earlier run, was made
// by this line's job: after an edit of the input, line N may be another
// job than the one that wrote its file, and skipping it would silently
// keep the wrong image. Its run record must hold the same job and seed.
func (l *batchLine) checkKept(j int) error {
	want := l.spec
	want.Normalize()
	wantJob, err := json.Marshal(want.Record())
	if err != nil {
		return err
	}
	m, err := imageio.ReadPNGMetadata(l.paths[j])
	var rec struct {
		Job  jobspec.Spec `json:"job"`
		Seed uint64       `json:"seed"`
	}
	if err == nil {
		err = json.Unmarshal([]byte(m.Run), &rec)
	}
	gotJob, _ := json.Marshal(rec.Job)
	if err != nil || !bytes.Equal(gotJob, wantJob) || rec.Seed != want.IterationSeed(j/want.BatchSize) {
		return fmt.Errorf("%s exists but was not made by this job (was the input edited since?): give another --out, or --overwrite to replace it", l.paths[j])
	}
	return nil
}

// runBatch runs the jobs of --in, in order, into --out (see newBatchFlags).
// The whole input is checked before anything runs: a bad line is a usage
// error naming it, and nothing is written.
func runBatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f batchFlags
	fs := newBatchFlags(&f, stderr)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if err := f.check(fs); err != nil {
		return err
	}
	lines, bad, err := readBatch(f.in)
	if err != nil {
		return err
	}
	todo, kept := planOutputs(lines, f.out, f.overwrite)
	if bad = append(bad, kept...); len(bad) > 0 {
		return badInput(f.in, bad)
	}
	if len(lines) == 0 {
		return usageErr("--in %s: no jobs (every line is blank or a # comment)", f.in)
	}
	if f.nats != "" {
		return f.runNATS(ctx, lines, todo, stdout, stderr)
	}
	return f.runLocal(ctx, lines, todo, stdout, stderr)
}

// runLocal opens the engine, checks every line on it, then runs the lines
// whose images are not all written yet (todo are their paths).
func (f *batchFlags) runLocal(ctx context.Context, lines []batchLine, todo []string, stdout, stderr io.Writer) error {
	notes := stderr
	if f.quiet {
		notes = io.Discard
	}
	prog := newProgress(stderr, f.quiet)
	r, dev, err := f.modelFlags.openRunner(ctx, notes, prog, jobspec.Limits{}, "sdxl-run batch")
	if err != nil {
		return interrupted(ctx, err)
	}
	defer dev.close()
	var bad []string // the bad lines
	for _, l := range lines {
		if _, err := r.Prepare(l.spec); err != nil {
			bad = append(bad, lineError(l.no, err))
		}
	}
	if len(bad) > 0 {
		return badInput(f.in, bad)
	}
	if err := f.makeOut(todo); err != nil {
		return err
	}
	b := &batch{f: f, lines: lines, stdout: stdout, stderr: stderr, notes: notes, bar: newBatchBar(prog, lines)}
	return b.run(ctx, func(ctx context.Context, l *batchLine) error { return b.runLine(ctx, r, l) })
}

// makeOut creates --out if missing and checks that the images to write
// (todo) can be written there.
func (f *batchFlags) makeOut(todo []string) error {
	if err := os.Mkdir(f.out, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return usageErr("--out %v", err)
	}
	if err := atomicfile.CheckTargets(f.overwrite, todo...); err != nil {
		return usageErr("--out: %v", err)
	}
	return nil
}

// batch is a batch run on its way through the lines.
type batch struct {
	f                     *batchFlags
	lines                 []batchLine
	bar                   *batchBar
	stdout, stderr, notes io.Writer
	done, skipped         int
	failed                []string
	// resume says what the same command does after an interruption
	// (default: runs the lines not written).
	resume string
}

// run runs the lines in order with runLine, which makes and writes a
// line's images. A failed line is reported and the others go on; a
// cancelled ctx stops the running line, writing none of its images.
func (b *batch) run(ctx context.Context, runLine func(context.Context, *batchLine) error) error {
	for _, l := range b.lines {
		if len(l.todo) == 0 {
			b.skipped++
		}
	}
	fmt.Fprintf(b.notes, "batch: %d lines: %d already written (skipped), %d to run\n", len(b.lines), b.skipped, len(b.lines)-b.skipped)
	for i := range b.lines {
		l := &b.lines[i]
		if len(l.todo) == 0 {
			continue
		}
		b.bar.k++
		err := runLine(ctx, l)
		b.bar.lineDone(l)
		if ctx.Err() != nil {
			return b.interrupted(l)
		}
		if err != nil {
			b.failed = append(b.failed, lineError(l.no, err))
			fmt.Fprintf(b.notes, "%s\n", b.failed[len(b.failed)-1])
			continue
		}
		b.done++
		for _, j := range l.todo {
			fmt.Fprintln(b.stdout, l.paths[j])
		}
		fmt.Fprintf(b.notes, "line %d: done, seed %d (%d of %d to run)\n", l.no, l.spec.Seed, b.done+len(b.failed), len(b.lines)-b.skipped)
	}
	return b.summary()
}

// runLine runs one line on r and writes its images.
func (b *batch) runLine(ctx context.Context, r *jobs.Runner, l *batchLine) error {
	p, err := r.Prepare(l.spec)
	if err != nil {
		return err
	}
	outs, err := r.Run(ctx, p, jobs.Hooks{Progress: func(k int, ev sdxl.Event) {
		if ev.Step == 0 {
			stageHook(ctx, fmt.Sprintf("line%d.%s", l.no, ev.Stage))
		}
		b.bar.step(l, (float64(k)+ev.Fraction())/float64(max(l.spec.NIter, 1)), ev)
	}})
	if err != nil {
		return err
	}
	if len(outs) != len(l.paths) {
		return fmt.Errorf("the job made %d images, want %d", len(outs), len(l.paths))
	}
	pngs := make([][]byte, len(outs))
	for i, o := range outs {
		pngs[i] = o.PNG
	}
	return b.write(ctx, l, pngs)
}

// write puts a line's images (pngs[j] is image j; only those of l.todo
// are read) in place together: staged first, then committed, so that an
// error or a signal on the way leaves none.
func (b *batch) write(ctx context.Context, l *batchLine, pngs [][]byte) error {
	defer holdWrites(ctx)()
	stageHook(ctx, fmt.Sprintf("line%d.write", l.no))
	var staged []*atomicfile.Pending
	for _, j := range l.todo {
		png := pngs[j]
		p, err := atomicfile.Stage(ctx, l.paths[j], b.f.overwrite, func(w io.Writer) error { _, err := w.Write(png); return err })
		if err != nil {
			atomicfile.AbortAll(staged...)
			return err
		}
		staged = append(staged, p)
	}
	if err := ctx.Err(); err != nil {
		atomicfile.AbortAll(staged...)
		return err
	}
	return atomicfile.CommitAll(staged...)
}

// interrupted ends a cancelled batch: what was written stays, the running
// line wrote nothing; the same command resumes.
func (b *batch) interrupted(l *batchLine) error {
	fmt.Fprintf(b.stderr, "batch: interrupted at line %d: %d lines done this run, %d skipped, %d failed; line %d and the rest wrote nothing\n",
		l.no, b.done, b.skipped, len(b.failed), l.no)
	resume := b.resume
	if resume == "" {
		resume = "run the same command again to resume (the lines written are skipped)"
	}
	return &exitError{code: 130, err: errors.New("interrupted; " + resume)}
}

// summary reports the run and fails when a line failed.
func (b *batch) summary() error {
	fmt.Fprintf(b.stderr, "batch: %d lines: %d done, %d skipped (already written), %d failed\n", len(b.lines), b.done, b.skipped, len(b.failed))
	for _, msg := range b.failed {
		fmt.Fprintf(b.stderr, "  %s\n", msg)
	}
	if len(b.failed) > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d lines failed (run the same command again to retry them)", len(b.failed), len(b.lines))}
	}
	return nil
}

// batchBar draws the progress of the line running and of the whole batch,
// whose estimate weighs each line by its images × steps × pixels.
type batchBar struct {
	prog        *progress
	start       time.Time
	total, done float64 // the work of the lines to run, of those finished
	n, k        int     // lines to run, the running one's place (1-based)
}

func newBatchBar(prog *progress, lines []batchLine) *batchBar {
	b := &batchBar{prog: prog, start: time.Now()}
	for _, l := range lines {
		if len(l.todo) > 0 {
			b.total += lineWork(l.spec)
			b.n++
		}
	}
	return b
}

// lineWork is a job's relative cost.
func lineWork(s jobspec.Spec) float64 {
	px := s.Width * s.Height
	if px == 0 {
		px = 1024 * 1024
	}
	return float64(s.Images()) * float64(s.Steps) * float64(px)
}

// step draws the bar for event ev of line l, frac of which is done.
func (b *batchBar) step(l *batchLine, frac float64, ev sdxl.Event) {
	if !b.prog.active() {
		return
	}
	done := b.done + frac*lineWork(l.spec)
	eta := ""
	if el := time.Since(b.start); done > 0 && b.total > done {
		eta = fmt.Sprintf(", about %s left", (time.Duration(float64(el) * (b.total - done) / done)).Round(time.Second))
	}
	b.prog.stepWith(fmt.Sprintf("line %d (%d/%d) ", l.no, b.k, b.n), fmt.Sprintf(" | batch %.0f%%%s", 100*done/b.total, eta), ev)
}

// lineDone counts a finished (or failed) line's work as done.
func (b *batchBar) lineDone(l *batchLine) {
	b.done += lineWork(l.spec)
	b.prog.finish()
}
