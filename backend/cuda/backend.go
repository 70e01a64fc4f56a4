package cuda

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/sdxl-go/sdxl/tensor"
)

// Options configure a Backend. The zero value is the default.
type Options struct {
	// Attention forces an attention implementation: "" or "auto" (flash for
	// head size 64 in F16/BF16, otherwise generic or GEMM by size), "flash",
	// "generic" or "gemm". An impossible choice falls back to automatic.
	Attention string
	// AllowTF32 lets F32 GEMMs (MatMul, Linear, Conv2D, GEMM attention) use
	// TF32 tensor cores: much faster, about 1e-3 relative error.
	AllowTF32 bool
	// KernelCacheDir holds compiled kernels between runs: "" means
	// <os.UserCacheDir>/sdxl-go/cuda-kernels, "off" disables the disk cache.
	KernelCacheDir string
	// SyncEveryOp waits for every op to finish, so that a kernel failure is
	// reported with the op that caused it (slow; for debugging).
	SyncEveryOp bool
	// ExactAllocations disables the memory pool's caching and rounding
	// (slow; for debugging out-of-bounds writes).
	ExactAllocations bool
}

// optionsFromEnv applies SDXL_CUDA_ATTENTION, SDXL_CUDA_TF32=1,
// SDXL_CUDA_KERNEL_CACHE, SDXL_CUDA_SYNC=1 and SDXL_CUDA_EXACT_ALLOC=1 on top
// of o, so that the device-check script and users can steer a binary
// without flags.
func optionsFromEnv(o Options) Options {
	if v := os.Getenv("SDXL_CUDA_ATTENTION"); v != "" {
		o.Attention = v
	}
	if os.Getenv("SDXL_CUDA_TF32") == "1" {
		o.AllowTF32 = true
	}
	if v := os.Getenv("SDXL_CUDA_KERNEL_CACHE"); v != "" {
		o.KernelCacheDir = v
	}
	if os.Getenv("SDXL_CUDA_SYNC") == "1" {
		o.SyncEveryOp = true
	}
	if os.Getenv("SDXL_CUDA_EXACT_ALLOC") == "1" {
		o.ExactAllocations = true
	}
	return o
}

// Backend is the CUDA tensor.Backend. A CUDA context is current per OS
// thread, so every driver, cuBLAS and NVRTC call runs on one goroutine
// locked to its thread (the device thread); ops validate shapes on the
// caller's goroutine, then queue a closure for the device thread and
// return the output tensor at once. Work on the GPU is asynchronous:
// ToFloat32 and Sync wait for it.
//
// The first failure (out of memory, a kernel error) is recorded and
// returned by Err; later ops are skipped (they return tensors whose
// contents are undefined; ToFloat32 then returns zeros) so that a failed
// op never crashes the process. A Backend is safe for use by several
// goroutines; ops are executed in the order they are submitted.
type Backend struct {
	name string
	opts Options

	tasks   chan task
	stopped chan struct{} // closed when the device thread exits
	closed  atomic.Bool
	close1  sync.Once

	info  DeviceInfo
	stats memStats

	mu     sync.Mutex
	err    error
	failed atomic.Bool

	flashOnce sync.Once
	flashErr  error

	// Sizes that bound temporary memory; tests shrink them to exercise
	// the chunked paths.
	stageElems     int   // FromFloat32/ToFloat32 conversion chunk (elements)
	convChunkBytes int64 // im2col buffer per Conv2D chunk
	attnChunkBytes int64 // score + probability buffers per GEMM-attention chunk
	gnTargetBlocks int64 // split GroupNorm: blocks to aim for (0: gnBlocksPerSM per SM)
	gnMinChunk     int64 // split GroupNorm: fewest elements per part (0: gnMinChunk)
	// forceWide makes the elementwise kernels index in 64 bits even below
	// 2^32 elements (tests: the wide path is otherwise unreachable).
	forceWide bool
}

var (
	_ tensor.Backend         = (*Backend)(nil)
	_ tensor.GroupNormSiLUer = (*Backend)(nil)
	_ tensor.Linearer        = (*Backend)(nil)
)

// New opens GPU ordinal with the default options (adjusted by the
// SDXL_CUDA_* environment variables). When the machine has no usable GPU
// or libraries the error wraps ErrUnavailable and reads
// "CUDA unavailable: <why>".
func New(ordinal int) (*Backend, error) { return NewWithOptions(ordinal, Options{}) }

// NewWithOptions opens GPU ordinal with o (adjusted by the environment).
func NewWithOptions(ordinal int, o Options) (*Backend, error) {
	o = optionsFromEnv(o)
	return newBackend(fmt.Sprintf("cuda:%d", ordinal), o, func() (device, error) { return openCUDA(ordinal, o) })
}

// newBackend starts the device thread, which opens the device with open.
func newBackend(name string, o Options, open func() (device, error)) (*Backend, error) {
	switch strings.ToLower(o.Attention) {
	case "", "auto", "flash", "generic", "gemm":
	default:
		return nil, fmt.Errorf("cuda: unknown attention implementation %q (want auto, flash, generic or gemm)", o.Attention)
	}
	b := &Backend{
		name:           name,
		opts:           o,
		tasks:          make(chan task, 1024),
		stopped:        make(chan struct{}),
		stageElems:     4 << 20,
		convChunkBytes: 256 << 20,
		attnChunkBytes: 512 << 20,
	}
	ready := make(chan error, 1)
	go b.deviceThread(open, ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return b, nil
}

// task is one unit of work for the device thread.
type task struct {
	op    string       // op name for error messages
	shape tensor.Shape // first input's shape (may be nil)
	dt    tensor.DType
	fn    func(d *devState) error
	// always runs the task even after a failure (frees, close).
	always bool
	// done, if not nil, receives the task's error (or the recorded failure
	// when the task was skipped).
	done chan error
}

// devState is what the device thread owns.
type devState struct {
	b       *Backend
	dev     device
	pool    *pool
	maxGrid int64
	quit    bool
}

// deviceThread locks itself to its OS thread for good: the CUDA context
// made current there must serve every call. (A goroutine that exits while
// locked takes its thread with it, which is what we want.)
func (b *Backend) deviceThread(open func() (device, error), ready chan<- error) {
	runtime.LockOSThread()
	defer close(b.stopped)
	dev, err := func() (dev device, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("cuda: opening the device: internal error: %v", r)
			}
		}()
		return open()
	}()
	if err != nil {
		ready <- err
		return
	}
	b.info = dev.info()
	d := &devState{
		b:       b,
		dev:     dev,
		pool:    newPool(dev, b.opts.ExactAllocations, &b.stats),
		maxGrid: int64(max(1, b.info.SMs) * 32),
	}
	ready <- nil
	for !d.quit {
		d.exec(<-b.tasks)
	}
}

func (d *devState) exec(t task) {
	b := d.b
	var err error
	if b.failed.Load() && !t.always {
		err = b.Err()
	} else {
		err = d.safely(t)
		if err == nil && b.opts.SyncEveryOp && !d.quit {
			err = d.dev.sync()
		}
		if err != nil {
			err = b.record(t, err)
		}
	}
	if t.done != nil {
		t.done <- err
	}
}

// safely runs a task, turning a panic on the device thread (a bug) into an
// error so that the thread survives.
func (d *devState) safely(t task) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error (panic on the device thread): %v", r)
		}
	}()
	return t.fn(d)
}

// record keeps the first failure, naming the op, and returns it.
func (b *Backend) record(t task, err error) error {
	desc := t.op
	if t.shape != nil {
		desc = fmt.Sprintf("%s %v %v", t.op, t.shape, t.dt)
	}
	var e *Error
	if errors.As(err, &e) && e.Op == "" {
		e.Op = desc
	} else {
		err = fmt.Errorf("cuda: %s: %w", desc, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
		b.failed.Store(true)
	}
	return err
}

// submit queues a task. Using a closed backend is a programming error.
func (b *Backend) submit(t task) {
	if b.closed.Load() {
		panic(fmt.Sprintf("cuda: %s on a closed backend", t.op))
	}
	select {
	case b.tasks <- t:
	case <-b.stopped:
		panic(fmt.Sprintf("cuda: %s on a closed backend", t.op))
	}
}

// call queues a task and waits for it.
func (b *Backend) call(t task) error {
	t.done = make(chan error, 1)
	b.submit(t)
	select {
	case err := <-t.done:
		return err
	case <-b.stopped:
		return errors.New("cuda: backend closed")
	}
}

// enqueue queues an op's device work without waiting.
func (b *Backend) enqueue(op string, x *tensor.Tensor, fn func(d *devState) error) {
	t := task{op: op, fn: fn}
	if x != nil {
		t.shape, t.dt = x.Shape(), x.DType()
	}
	b.submit(t)
}

// Name implements tensor.Backend ("cuda:0").
func (b *Backend) Name() string { return b.name }

// Info describes the device and libraries.
func (b *Backend) Info() DeviceInfo {
	i := b.info
	if err := b.flashAvailable(); err != nil {
		i.FlashUnavailable = err.Error()
	}
	return i
}

// Err implements tensor.Backend: the first failure, or nil.
func (b *Backend) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// Sync waits for all queued work and returns Err.
func (b *Backend) Sync() error {
	if b.closed.Load() {
		return b.Err()
	}
	err := b.call(task{op: "Sync", fn: func(d *devState) error { return d.dev.sync() }})
	if err != nil {
		return err
	}
	return b.Err()
}

// MemStats reports device memory use in bytes: Reserved is held from the
// driver (live tensors plus the pool's cache), InUse is held by live
// tensors, and the peaks are maxima since creation or ResetPeak.
type MemStats struct {
	Reserved, InUse, PeakReserved, PeakInUse int64
	// Allocs counts calls to cuMemAlloc (pool misses).
	Allocs int64
}

// MemStats returns the current counters (ops still queued are not
// counted until the device thread reaches them; Sync first for exact
// numbers).
func (b *Backend) MemStats() MemStats {
	return MemStats{
		Reserved: b.stats.reserved.Load(), InUse: b.stats.inUse.Load(),
		PeakReserved: b.stats.peakReserved.Load(), PeakInUse: b.stats.peakInUse.Load(),
		Allocs: b.stats.allocs.Load(),
	}
}

// PeakBytes is the peak device memory held from the driver for tensors
// (the pool included): what the backend adds to nvidia-smi's figure, short
// of the CUDA context and cuBLAS workspace.
func (b *Backend) PeakBytes() int64 { return b.stats.peakReserved.Load() }

// ResetPeak restarts peak tracking from the current use.
func (b *Backend) ResetPeak() {
	b.stats.peakReserved.Store(b.stats.reserved.Load())
	b.stats.peakInUse.Store(b.stats.inUse.Load())
}

// TrimCache returns the pool's cached free blocks to the driver.
func (b *Backend) TrimCache() error {
	return b.call(task{op: "TrimCache", always: true, fn: func(d *devState) error { return d.pool.trim() }})
}

// Close waits for queued work, releases all device memory, the cuBLAS
// handle, the stream and the context, and stops the device thread. Tensors
// of the backend must not be used afterwards. Close returns the first
// failure of the backend's lifetime, if any.
func (b *Backend) Close() error {
	var cerr error
	b.close1.Do(func() {
		cerr = b.call(task{op: "Close", always: true, fn: func(d *devState) error {
			d.quit = true
			serr := d.dev.sync()
			// Live tensors' blocks are freed too: another Backend may hold
			// the same primary context, which would keep them alive.
			perr := d.pool.releaseAll()
			derr := d.dev.close()
			return errors.Join(serr, perr, derr)
		}})
		b.closed.Store(true)
		<-b.stopped
	})
	if err := b.Err(); err != nil {
		return err
	}
	return cerr
}

// buffer is a tensor's Storage: a handle to device memory that the device
// thread allocates when the producing op runs. Reshaped views share it.
type buffer struct {
	owner   *Backend
	mem     *devMem
	freed   atomic.Bool
	cleanup runtime.Cleanup
}

// devMem is the device-side state of a buffer, touched only on the device
// thread.
type devMem struct {
	bytes int    // requested size
	ptr   uint64 // 0 until allocated, and after release
	class int    // pool class of ptr (0 when not allocated)
}

// newTensor creates an output tensor whose memory the op's device task
// allocates. Memory of a tensor that is dropped without Free is returned
// when the garbage collector finds it unreachable.
func (b *Backend) newTensor(dt tensor.DType, shape tensor.Shape) (*tensor.Tensor, *devMem) {
	if dt != tensor.F32 && dt != tensor.F16 && dt != tensor.BF16 {
		panic(fmt.Sprintf("cuda: unsupported dtype %v", dt))
	}
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("cuda: negative dimension in shape %v", shape))
		}
	}
	m := &devMem{bytes: shape.Numel() * dt.Size()}
	buf := &buffer{owner: b, mem: m}
	buf.cleanup = runtime.AddCleanup(buf, b.releaseLost, m)
	return tensor.New(b, shape, dt, buf), m
}

// releaseLost frees the memory of a tensor the program dropped without
// Free. It runs on the runtime's cleanup goroutine, after every op that
// used the tensor was queued, so the release is queued after them.
func (b *Backend) releaseLost(m *devMem) {
	if b.closed.Load() {
		return
	}
	select {
	case b.tasks <- task{op: "Free (garbage collected)", always: true, fn: func(d *devState) error { return d.release(m) }}:
	case <-b.stopped:
	}
}

// mem returns t's device memory handle, panicking (a programming error)
// when t is nil, a meta tensor, another backend's tensor or freed.
func (b *Backend) mem(op string, t *tensor.Tensor) *devMem {
	if t == nil {
		panic(fmt.Sprintf("cuda: %s: nil tensor", op))
	}
	buf, ok := t.Storage.(*buffer)
	if !ok || buf.owner != b {
		panic(fmt.Sprintf("cuda: %s: %v is not a tensor of %s (meta, freed or from another backend)", op, t, b.name))
	}
	if buf.freed.Load() {
		panic(fmt.Sprintf("cuda: %s: %v used after Free", op, t))
	}
	return buf.mem
}

// optMem is mem for optional inputs (nil stays nil).
func (b *Backend) optMem(op string, t *tensor.Tensor) *devMem {
	if t == nil {
		return nil
	}
	return b.mem(op, t)
}

func optShape(t *tensor.Tensor) tensor.Shape {
	if t == nil {
		return nil
	}
	return t.Shape()
}

// Free implements tensor.Backend: the memory returns to the pool once the
// ops queued before it have been issued.
func (b *Backend) Free(t *tensor.Tensor) {
	if t == nil {
		return
	}
	buf, ok := t.Storage.(*buffer)
	if !ok || buf.owner != b {
		panic(fmt.Sprintf("cuda: Free: %v is not a tensor of %s", t, b.name))
	}
	if buf.freed.Swap(true) {
		return
	}
	buf.cleanup.Stop()
	if b.closed.Load() {
		return
	}
	m := buf.mem
	b.submit(task{op: "Free", always: true, fn: func(d *devState) error { return d.release(m) }})
}

// alloc gives m its device memory.
func (d *devState) alloc(m *devMem) error {
	if m.bytes == 0 || m.class != 0 {
		return nil
	}
	p, c, err := d.pool.alloc(m.bytes)
	if err != nil {
		return err
	}
	m.ptr, m.class = p, c
	return nil
}

// release returns m's memory to the pool.
func (d *devState) release(m *devMem) error {
	if m.class == 0 {
		return nil
	}
	p, c := m.ptr, m.class
	m.ptr, m.class = 0, 0
	return d.pool.release(p, c)
}

// ptr returns an input's device address, failing when its memory is gone
// (a tensor freed while a view of it was still in use).
func (d *devState) ptr(m *devMem) (uint64, error) {
	if m == nil {
		return 0, nil
	}
	if m.bytes > 0 && m.class == 0 {
		return 0, errors.New("input tensor has no device memory (freed, or its producing op failed)")
	}
	return m.ptr, nil
}

// ptr3 is ptr for an op's input, weight and bias (the last two may be nil).
func (d *devState) ptr3(x, w, b *devMem) (xp, wp, bp uint64, err error) {
	if xp, err = d.ptr(x); err != nil {
		return
	}
	if wp, err = d.ptr(w); err != nil {
		return
	}
	bp, err = d.ptr(b)
	return
}

// temp allocates scratch memory of n bytes for the duration of a task.
func (d *devState) temp(n int) (*devMem, error) {
	m := &devMem{bytes: n}
	return m, d.alloc(m)
}

// launch1D runs a grid-stride kernel over n items with 256-thread blocks.
func (d *devState) launch1D(m *kernelModule, name string, n int64, a *kargs) error {
	if n <= 0 {
		return nil
	}
	const block = 256
	grid := min((n+block-1)/block, d.maxGrid)
	return d.dev.launch(m, name, [3]uint32{uint32(grid), 1, 1}, [3]uint32{block, 1, 1}, a)
}

// wide is the kernels' wide flag for an index space of n elements: 1 when
// 32-bit index arithmetic cannot split it (or force is set), else 0.
func wide(n int64, force bool) int {
	if force || n > math.MaxUint32 {
		return 1
	}
	return 0
}

// offset returns the address of element i of a tensor of dtype dt at p.
func offset(p uint64, i int64, dt tensor.DType) uint64 { return p + uint64(i)*uint64(dt.Size()) }

// dtc is a dtype's code in the kernels (DT_F32, DT_F16, DT_BF16).
func dtc(dt tensor.DType) int { return int(dt) }

// Zeros implements tensor.Backend.
func (b *Backend) Zeros(dt tensor.DType, shape ...int) *tensor.Tensor {
	out, om := b.newTensor(dt, tensor.Shape(shape))
	b.enqueue("Zeros", out, func(d *devState) error {
		if err := d.alloc(om); err != nil {
			return err
		}
		if om.bytes == 0 {
			return nil
		}
		return d.dev.memsetZero(om.ptr, om.bytes)
	})
	return out
}

// f32Bytes views a float32 slice as bytes.
func f32Bytes(s []float32) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*4)
}

// asyncUploadElems is the largest FromFloat32 that is copied on the host
// and queued without waiting (1 MiB of float32): small uploads in the
// middle of a forward pass (timestep embeddings, masks) then do not stall
// the caller until the device thread has issued every queued op. Larger
// ones (weights) are read in place, waiting, to spare the host a copy.
const asyncUploadElems = 1 << 18

// FromFloat32 implements tensor.Backend. F32 data is copied as is; F16 and
// BF16 data is converted on the device (round to nearest even), chunk by
// chunk through a float32 staging buffer. The call returns once the host
// data has been read (copied, for small data).
func (b *Backend) FromFloat32(dt tensor.DType, shape tensor.Shape, data []float32) *tensor.Tensor {
	if len(data) != shape.Numel() {
		panic(fmt.Sprintf("cuda: FromFloat32: %d values for shape %v (%d elements)", len(data), shape, shape.Numel()))
	}
	out, om := b.newTensor(dt, shape)
	stage := b.stageElems
	t := task{op: "FromFloat32", shape: shape, dt: dt}
	if len(data) <= asyncUploadElems {
		data = slices.Clone(data)
	} else {
		t.done = make(chan error, 1)
	}
	t.fn = func(d *devState) error {
		if err := d.alloc(om); err != nil || len(data) == 0 {
			return err
		}
		if dt == tensor.F32 {
			return d.dev.upload(om.ptr, f32Bytes(data))
		}
		tmp, err := d.temp(min(len(data), stage) * 4)
		if err != nil {
			return err
		}
		defer d.release(tmp)
		for lo := 0; lo < len(data); lo += stage {
			hi := min(lo+stage, len(data))
			if err := d.dev.upload(tmp.ptr, f32Bytes(data[lo:hi])); err != nil {
				return err
			}
			n := int64(hi - lo)
			a := newArgs().i64(n).ptr(tmp.ptr).i32(dtc(tensor.F32)).ptr(offset(om.ptr, int64(lo), dt)).i32(dtc(dt)).i32(unCopy).f32(0)
			if err := d.launch1D(modElementwise, "k_unary", n, a); err != nil {
				return err
			}
		}
		return nil
	}
	b.submit(t)
	if t.done != nil {
		// The error is recorded by the backend (Err); the tensor is
		// returned regardless, as for every op.
		select {
		case <-t.done:
		case <-b.stopped:
		}
	}
	return out
}

// ToFloat32 implements tensor.Backend. It waits for the tensor's producing
// ops. After a failure of the backend it returns zeros.
func (b *Backend) ToFloat32(t *tensor.Tensor) []float32 {
	m := b.mem("ToFloat32", t)
	dt := t.DType()
	n := t.Numel()
	res := make([]float32, n)
	stage := b.stageElems
	err := b.call(task{op: "ToFloat32", shape: t.Shape(), dt: dt, fn: func(d *devState) error {
		src, err := d.ptr(m)
		if err != nil || n == 0 {
			return err
		}
		if dt == tensor.F32 {
			return d.dev.download(f32Bytes(res), src)
		}
		tmp, err := d.temp(min(n, stage) * 4)
		if err != nil {
			return err
		}
		defer d.release(tmp)
		for lo := 0; lo < n; lo += stage {
			hi := min(lo+stage, n)
			k := int64(hi - lo)
			a := newArgs().i64(k).ptr(offset(src, int64(lo), dt)).i32(dtc(dt)).ptr(tmp.ptr).i32(dtc(tensor.F32)).i32(unCopy).f32(0)
			if err := d.launch1D(modElementwise, "k_unary", k, a); err != nil {
				return err
			}
			if err := d.dev.download(f32Bytes(res[lo:hi]), tmp.ptr); err != nil {
				return err
			}
		}
		return nil
	}})
	if err != nil {
		clear(res)
	}
	return res
}
