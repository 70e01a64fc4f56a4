package cuda

import "errors"

// contextReserve is device memory a budget leaves for what the pool does
// not see: the CUDA context, cuBLAS's workspace, NVRTC's modules.
const contextReserve = 768 << 20

// memInfoer is a device that can tell its free memory (the real driver;
// the emulator and test devices cannot).
type memInfoer interface {
	memInfo() (free, total uint64, err error)
}

// MemoryBudget is the device memory this backend may hold, in bytes: what
// it holds now (weights, live tensors, the pool's cache) plus what the
// driver says is free, less a reserve for the context and cuBLAS. Without
// the driver's figure it assumes the device is its own (its total memory).
// sdxl.Engine uses it to refuse a request whose estimate does not fit
// before it starts, instead of failing with CUDA_ERROR_OUT_OF_MEMORY in
// the middle; 0 means unknown.
func (b *Backend) MemoryBudget() int64 {
	held := b.stats.reserved.Load()
	var free, total int64
	err := b.call(task{op: "MemoryBudget", fn: func(d *devState) error {
		mi, ok := d.dev.(memInfoer)
		if !ok {
			return errors.New("the device cannot tell its free memory")
		}
		f, t, err := mi.memInfo()
		free, total = int64(f), int64(t)
		return err
	}})
	if err != nil {
		total = b.info.TotalMemory
		free = total - held
	}
	return budgetOf(held, free, total)
}

// budgetOf is held + free - the reserve, at most the device's total less
// the reserve, never negative.
func budgetOf(held, free, total int64) int64 {
	if total <= 0 {
		return 0
	}
	bud := min(held+free, total) - contextReserve
	return max(bud, 0)
}
