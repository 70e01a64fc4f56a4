package cuda

import (
	"fmt"
	"sync"

	"github.com/sdxl-go/sdxl/tensor"
)

// torch.randn on a CUDA generator, drawn on the device (kernels/random.cu)
// so that the values are the GPU's own: cuRAND's Box-Muller uses the
// hardware __sincosf, which a CPU reproduces only to about 1e-6
// (sched/torchrand.CUDA). The host keeps the generator state (seed and
// Philox offset) and advances it per draw exactly as ATen does.

// ATen's launch constants for the normal distribution kernel
// (DistributionTemplates.h): 256-thread blocks, and four 32-bit Philox
// values per curand_normal4 call.
const (
	randnBlock        = 256
	randnUnroll       = 4
	randnEngineCalls  = 4
	randnMaxElements  = 1<<31 - 1 // ATen splits larger tensors into 32-bit-indexed pieces; not reproduced
	defaultThreadsPSM = 2048
)

// torchRandnGrid mirrors calc_execution_policy and philox_cuda_state for n
// elements on a device with sms multiprocessors of threadsPerSM threads:
// the number of blocks, and how far the draw advances the generator's
// offset (a multiple of 4).
func torchRandnGrid(n int64, sms, threadsPerSM int) (blocks int64, increment uint64) {
	if sms <= 0 {
		sms = 1
	}
	if threadsPerSM <= 0 {
		threadsPerSM = defaultThreadsPSM
	}
	blocks = (n + randnBlock - 1) / randnBlock
	blocks = min(blocks, int64(sms)*int64(threadsPerSM/randnBlock))
	counterOffset := uint64((n-1)/(randnBlock*blocks*randnUnroll)+1) * randnEngineCalls
	return blocks, (counterOffset + 3) / 4 * 4
}

// torchRandnTensor queues the draw of n values of stream (seed, offset)
// into a new tensor of dtype dt and the given shape, and returns it with
// the offset increment of the draw.
func (b *Backend) torchRandnTensor(seed, offset uint64, dt tensor.DType, shape tensor.Shape) (*tensor.Tensor, uint64) {
	return b.torchRandnMode(seed, offset, dt, shape, 0)
}

// torchRandnMode is torchRandnTensor with a k_torch_randn mode (RANDN_* of
// random.cu; 0 is torch's computation, the others are diagnostics).
func (b *Backend) torchRandnMode(seed, offset uint64, dt tensor.DType, shape tensor.Shape, mode int) (*tensor.Tensor, uint64) {
	const op = "TorchRandn"
	n := int64(shape.Numel())
	if n > randnMaxElements {
		panic(fmt.Sprintf("cuda: %s: %d elements; at most %d are supported", op, n, randnMaxElements))
	}
	out, om := b.newTensor(dt, shape)
	if n == 0 {
		// torch launches nothing for an empty tensor: the offset stays.
		b.enqueue(op, out, func(d *devState) error { return d.alloc(om) })
		return out, 0
	}
	blocks, inc := torchRandnGrid(n, b.info.SMs, b.info.MaxThreadsPerSM)
	b.enqueue(op, out, func(d *devState) error {
		if err := d.alloc(om); err != nil {
			return err
		}
		a := newArgs().i64(n).u64(seed).u64(offset).ptr(om.ptr).i32(dtc(dt)).i32(mode)
		return d.dev.launch(modRandom, "k_torch_randn", [3]uint32{uint32(blocks), 1, 1}, [3]uint32{randnBlock, 1, 1}, a)
	})
	return out, inc
}

// TorchRandn returns torch.randn(n, dtype=dt, device="cuda",
// generator=g) for a generator g whose state is seed and Philox offset
// (g.manual_seed(seed) starts at offset 0; every draw advances it, see
// TorchGenerator), drawn on this backend's GPU with ATen's launch geometry
// for its SM count. F16 and BF16 values are the float values rounded once,
// widened back to float32. It waits for the draw.
func (b *Backend) TorchRandn(seed, offset uint64, n int, dt tensor.DType) ([]float32, error) {
	if n < 0 || int64(n) > randnMaxElements {
		return nil, fmt.Errorf("cuda: TorchRandn: %d elements (want 0 to %d)", n, int64(randnMaxElements))
	}
	if dt != tensor.F32 && dt != tensor.F16 && dt != tensor.BF16 {
		return nil, fmt.Errorf("cuda: TorchRandn: dtype %v (want F32, F16 or BF16)", dt)
	}
	t, _ := b.torchRandnTensor(seed, offset, dt, tensor.Shape{n})
	v := b.ToFloat32(t)
	t.Free()
	if err := b.Err(); err != nil {
		return nil, err
	}
	return v, nil
}

// TorchGenerator is torch.Generator("cuda") on a backend's GPU: a seed and
// a Philox offset that every draw advances as ATen does (the increment
// depends on the element count and on the device's SM count, like the
// values' layout), so consecutive draws continue torch's stream. It
// implements sched.Generator. A TorchGenerator is safe for concurrent use;
// draws are ordered by their calls.
type TorchGenerator struct {
	b      *Backend
	mu     sync.Mutex
	seed   uint64
	offset uint64
}

// NewTorchGenerator returns a generator in the state of
// torch.Generator("cuda").manual_seed(seed) on b's device.
func (b *Backend) NewTorchGenerator(seed uint64) *TorchGenerator {
	return &TorchGenerator{b: b, seed: seed}
}

// ManualSeed is Generator.manual_seed: a new seed and offset 0.
func (g *TorchGenerator) ManualSeed(seed uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seed, g.offset = seed, 0
}

// InitialSeed is Generator.initial_seed: the seed last set.
func (g *TorchGenerator) InitialSeed() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seed
}

// Offset is Generator.get_offset: the Philox offset the next draw starts
// from.
func (g *TorchGenerator) Offset() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.offset
}

// SetOffset is Generator.set_offset (torch requires a multiple of 4).
func (g *TorchGenerator) SetOffset(offset uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.offset = offset
}

// RandnTensor draws torch.randn(shape, dtype=dt) into a new device tensor
// without waiting for it.
func (g *TorchGenerator) RandnTensor(dt tensor.DType, shape ...int) *tensor.Tensor {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, inc := g.b.torchRandnTensor(g.seed, g.offset, dt, tensor.Shape(shape))
	g.offset += inc
	return t
}

// Randn is torch.randn(n, device="cuda", generator=g) in float32. After a
// failure of the backend it returns zeros (the failure is the backend's
// Err).
func (g *TorchGenerator) Randn(n int) []float32 { return g.draw(n, tensor.F32) }

// RandnHalf is the same draw in torch.float16, widened to float32.
func (g *TorchGenerator) RandnHalf(n int) []float32 { return g.draw(n, tensor.F16) }

func (g *TorchGenerator) draw(n int, dt tensor.DType) []float32 {
	t := g.RandnTensor(dt, n)
	v := g.b.ToFloat32(t)
	t.Free()
	return v
}
