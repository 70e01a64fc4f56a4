package cuda

import (
	"fmt"
	"math/bits"
	"sync/atomic"
)

// allocator is the device memory source under the pool (cuMemAlloc and
// cuMemFree on the device thread; a fake in tests).
type allocator interface {
	memAlloc(n int) (uint64, error)
	memFree(p uint64) error
}

// memStats are the pool's counters, published atomically so that any
// goroutine may read them while the device thread updates them.
type memStats struct {
	reserved, inUse         atomic.Int64
	peakReserved, peakInUse atomic.Int64
	allocs                  atomic.Int64 // calls into the allocator
}

// pool is a caching device allocator with size classes: a freed block goes
// to its class's free list and the next request of that class reuses it
// instead of calling cuMemAlloc (slow, and it would grow fragmentation). Its
// methods run on the device thread only. Reuse is safe without
// synchronisation because all work runs on one stream: a kernel that uses a
// recycled block is queued after every kernel that used it before.
type pool struct {
	a     allocator
	exact bool // no rounding and no caching (debugging: overruns show up)
	free  map[int][]uint64
	live  map[uint64]int // blocks handed out, by address: their class
	st    *memStats
}

func newPool(a allocator, exact bool, st *memStats) *pool {
	return &pool{a: a, exact: exact, free: map[int][]uint64{}, live: map[uint64]int{}, st: st}
}

// sizeClass rounds a request up to its class: at least 512 bytes, powers
// of two up to 1 MiB, then eight classes per power of two (at most 12.5%
// waste), multiples of 512 bytes throughout.
func sizeClass(n int) int {
	const minClass, fine = 512, 1 << 20
	if n <= minClass {
		return minClass
	}
	if n <= fine {
		return 1 << bits.Len(uint(n-1))
	}
	step := 1 << (bits.Len(uint(n-1)) - 1 - 3) // (2^k)/8 with 2^k < n <= 2^(k+1)
	return (n + step - 1) / step * step
}

// alloc returns a block of at least n > 0 bytes and its class (the size to
// pass back to release). When the device is out of memory it returns every
// cached block to the driver and tries once more.
func (p *pool) alloc(n int) (uint64, int, error) {
	if n <= 0 {
		return 0, 0, fmt.Errorf("pool: allocation of %d bytes", n)
	}
	c := n
	if !p.exact {
		c = sizeClass(n)
		if l := p.free[c]; len(l) > 0 {
			ptr := l[len(l)-1]
			p.free[c] = l[:len(l)-1]
			p.use(ptr, c)
			return ptr, c, nil
		}
	}
	ptr, err := p.a.memAlloc(c)
	if err != nil && isOutOfMemory(err) && p.cached() > 0 {
		if terr := p.trim(); terr != nil {
			return 0, 0, terr
		}
		ptr, err = p.a.memAlloc(c)
	}
	if err != nil {
		return 0, 0, err
	}
	p.st.allocs.Add(1)
	r := p.st.reserved.Add(int64(c))
	if r > p.st.peakReserved.Load() {
		p.st.peakReserved.Store(r)
	}
	p.use(ptr, c)
	return ptr, c, nil
}

func (p *pool) use(ptr uint64, c int) {
	p.live[ptr] = c
	u := p.st.inUse.Add(int64(c))
	if u > p.st.peakInUse.Load() {
		p.st.peakInUse.Store(u)
	}
}

// release returns a block obtained from alloc.
func (p *pool) release(ptr uint64, class int) error {
	if c, ok := p.live[ptr]; !ok || c != class {
		return fmt.Errorf("pool: release of block %#x (class %d) that is not allocated", ptr, class)
	}
	delete(p.live, ptr)
	p.st.inUse.Add(-int64(class))
	if p.exact {
		p.st.reserved.Add(-int64(class))
		return p.a.memFree(ptr)
	}
	p.free[class] = append(p.free[class], ptr)
	return nil
}

// cached is the number of bytes held in free lists.
func (p *pool) cached() int64 {
	var n int64
	for c, l := range p.free {
		n += int64(c) * int64(len(l))
	}
	return n
}

// trim frees every cached block (cuMemFree synchronises the device, so no
// queued kernel still uses them).
func (p *pool) trim() error {
	var first error
	for c, l := range p.free {
		for _, ptr := range l {
			if err := p.a.memFree(ptr); err != nil && first == nil {
				first = err
			}
			p.st.reserved.Add(-int64(c))
		}
		delete(p.free, c)
	}
	return first
}

// releaseAll frees every block, cached or still owned by a tensor (Close).
func (p *pool) releaseAll() error {
	var first error
	for ptr, c := range p.live {
		if err := p.a.memFree(ptr); err != nil && first == nil {
			first = err
		}
		p.st.reserved.Add(-int64(c))
		p.st.inUse.Add(-int64(c))
		delete(p.live, ptr)
	}
	if err := p.trim(); err != nil && first == nil {
		first = err
	}
	return first
}
