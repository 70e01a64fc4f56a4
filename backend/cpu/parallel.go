package cpu

import "sync"

// parallel splits [0, n) into at most b.threads contiguous chunks of at
// least grain items and runs fn on each, returning when all are done. Small
// jobs run on the calling goroutine.
func (b *Backend) parallel(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	chunks := min(b.threads, (n+grain-1)/grain)
	if chunks <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for c := range chunks {
		lo, hi := c*n/chunks, (c+1)*n/chunks
		if c == chunks-1 {
			fn(lo, hi)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// parallelItems runs fn(i) for i in [0, n) on at most b.threads goroutines
// that take items one at a time, which balances uneven items.
func (b *Backend) parallelItems(n int, fn func(i int)) {
	workers := min(b.threads, n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var (
		mu   sync.Mutex
		next int
		wg   sync.WaitGroup
	)
	take := func() int {
		mu.Lock()
		defer mu.Unlock()
		i := next
		next++
		return i
	}
	work := func() {
		for i := take(); i < n; i = take() {
			fn(i)
		}
	}
	for range workers - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}
