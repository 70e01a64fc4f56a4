package memory

import (
	"fmt"
	"strings"
)

// TooLarge is the error of Check: the request needs more than the budget.
type TooLarge struct {
	Estimate Estimate
	Need     int64 // bytes still to be allocated
	Budget   int64
	// Fits says what would fit (e.g. "1024x1024 fits with 1 image"), ""
	// when not even the smallest image does.
	Fits string
}

func (e *TooLarge) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "needs about %s but %s is available", e.Estimate, GiB(e.Budget))
	if e.Need != e.Estimate.Total() {
		fmt.Fprintf(&b, " (%s of it still to allocate)", GiB(e.Need))
	}
	if e.Fits != "" {
		b.WriteString("; " + e.Fits)
	} else {
		b.WriteString("; not even the smallest image fits: use float16 weights, offloading or a machine with more memory")
	}
	return b.String()
}

// need is what r still has to allocate on the device.
func need(r Request, e Estimate) int64 {
	if r.WeightsLoaded && !r.Offload {
		return e.Peak.Bytes + Overhead + r.LoRABytes
	}
	return e.Total()
}

// Check returns a *TooLarge error when r does not fit in budget bytes on
// the device, nil otherwise (and always nil for budget <= 0: unknown).
// The error says what would fit: fewer images at this size, or the largest
// square size (a multiple of 64) with one image.
func Check(r Request, budget int64, models ...*Model) error {
	if budget <= 0 {
		return nil
	}
	e := Of(r, models...)
	n := need(r, e)
	if n <= budget {
		return nil
	}
	fits := func(q Request) bool { return need(q, Of(q, models...)) <= budget }
	err := &TooLarge{Estimate: e, Need: n, Budget: budget}
	if r.Images > 1 {
		q := r
		q.Images = 1
		if fits(q) {
			lo, hi := 1, r.Images // lo fits, hi does not
			for hi-lo > 1 {
				mid := (lo + hi) / 2
				q.Images = mid
				if fits(q) {
					lo = mid
				} else {
					hi = mid
				}
			}
			err.Fits = fmt.Sprintf("%d images fit at %dx%d", lo, r.Width, r.Height)
			return err
		}
	}
	q := r
	q.Images = 1
	best := 0
	for side := 64; side <= max(r.Width, r.Height); side += 64 {
		q.Width, q.Height = side, side
		if !fits(q) {
			break
		}
		best = side
	}
	if best > 0 {
		err.Fits = fmt.Sprintf("%dx%d fits with 1 image", best, best)
	}
	return err
}
