package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sdxl-go/sdxl/sdxl"
)

// progress draws a one-line progress bar on a terminal and stays silent
// otherwise (or with --quiet), so logs and pipes get no control characters.
type progress struct {
	w        io.Writer
	tty      bool
	quiet    bool
	start    time.Time
	lastLoad time.Time
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) active() bool { return p.tty && !p.quiet }

// load reports weight loading, at most ten times a second.
func (p *progress) load(component string, done, total int) {
	if !p.active() {
		return
	}
	if now := time.Now(); done < total && now.Sub(p.lastLoad) < 100*time.Millisecond {
		return
	} else {
		p.lastLoad = now
	}
	fmt.Fprintf(p.w, "\r\033[Kloading %s %d/%d", component, done, total)
}

func (p *progress) doneLoading() {
	if p.active() {
		fmt.Fprintf(p.w, "\r\033[Kloaded in %.1fs\n", time.Since(p.start).Seconds())
	}
	p.start = time.Now()
}

// step draws the bar at every event of a run: the stage, its step, the
// whole run's fraction, the elapsed time and the estimate of what is left.
func (p *progress) step(e sdxl.Event) error { return p.stepWith("", "", e) }

// stepWith is step with text before and after the bar (a batch's line
// and its whole estimate).
func (p *progress) stepWith(prefix, suffix string, e sdxl.Event) error {
	if !p.active() {
		return nil
	}
	const width = 30
	fill := int(width * e.Fraction())
	eta := ""
	if e.ETA > 0 {
		eta = fmt.Sprintf(", about %.0fs left", e.ETA.Seconds())
	}
	t := ""
	if e.Latents != nil {
		t = fmt.Sprintf("  t=%g", e.Timestep)
	}
	fmt.Fprintf(p.w, "\r\033[K%s%-7s [%s%s] %d/%d%s  %.1fs%s%s", prefix, e.Stage, strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		e.Step, e.Steps, t, e.Elapsed.Seconds(), eta, suffix)
	return nil
}

func (p *progress) finish() {
	if p.active() {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
