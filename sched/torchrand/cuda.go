package torchrand

import "math"

// CUDA reproduces torch.Generator("cuda") as used by torch.randn on a CUDA
// device: cuRAND's Philox4x32-10 counter-based generator driven by ATen's
// grid-stride normal kernel (aten/src/ATen/native/cuda/DistributionTemplates.h).
//
// Each kernel launch reads the generator's (seed, offset) pair and advances
// the offset by a multiple of 4 that depends on the element count and the
// launch grid; thread i initialises curand_init(seed, subsequence=i, offset)
// and writes elements i, i+S, i+2S, i+3S (S = threads in the grid) from one
// curand_normal4 call, looping while elements remain. The grid is capped by
// the device's SM count, so for tensors of more than SMs*2048 elements the
// layout depends on the GPU; the defaults describe an H100/H200 (132 SMs,
// 2048 threads per SM). Latents up to 4x4x128x128 never reach the cap on
// either.
//
// The uint32 stream (Philox and the counter layout) is exact. The float
// transform is cuRAND's Box-Muller with the GPU's __sincosf and logf, which
// are hardware approximations this CPU code cannot reproduce bit for bit:
// it uses correctly rounded sine, cosine and log instead. The differences
// are a few ulps on a small fraction of values; TestCUDAStreamsGolden
// measures them against torch's output on an H200.
type CUDA struct {
	seed   uint64
	offset uint64 // philox_offset_per_thread, in 32-bit draws

	// SMCount and MaxThreadsPerSM are the cudaDeviceProp fields ATen reads
	// to size the launch grid.
	SMCount         int
	MaxThreadsPerSM int
}

// Device properties of an H100 SXM and an H200 (identical here).
const (
	defaultSMCount         = 132
	defaultMaxThreadsPerSM = 2048
)

// NewCUDA returns a generator in the state of
// torch.Generator("cuda").manual_seed(seed) on an H100/H200-class device.
func NewCUDA(seed uint64) *CUDA {
	return &CUDA{seed: seed, SMCount: defaultSMCount, MaxThreadsPerSM: defaultMaxThreadsPerSM}
}

// ManualSeed is Generator.manual_seed: new seed, offset back to zero.
func (g *CUDA) ManualSeed(seed uint64) {
	g.seed = seed
	g.offset = 0
}

// InitialSeed is the seed last set.
func (g *CUDA) InitialSeed() uint64 { return g.seed }

// Offset is the Philox offset the next launch will start from
// (Generator.get_offset()).
func (g *CUDA) Offset() uint64 { return g.offset }

const (
	blockSize        = 256 // block_size_bound
	curandCallOffset = 4   // max_generator_offsets_per_curand_call
	normalUnroll     = 4   // sizeof(float4)/sizeof(float): float and half both accumulate in float
)

// launch mirrors calc_execution_policy and philox_cuda_state: it returns the
// grid's thread count and the offset the kernel runs with, and advances the
// generator.
func (g *CUDA) launch(n int) (threads int, offset uint64) {
	grid := (n + blockSize - 1) / blockSize
	sms, tps := g.SMCount, g.MaxThreadsPerSM
	if sms <= 0 {
		sms = defaultSMCount
	}
	if tps <= 0 {
		tps = defaultMaxThreadsPerSM
	}
	if maxGrid := sms * (tps / blockSize); grid > maxGrid {
		grid = maxGrid
	}
	threads = grid * blockSize
	counterOffset := uint64((n-1)/(threads*normalUnroll)+1) * curandCallOffset
	increment := (counterOffset + 3) / 4 * 4
	offset = g.offset
	g.offset += increment
	return threads, offset
}

// Randn is torch.randn(n, device="cuda", generator=g) in float32.
func (g *CUDA) Randn(n int) []float32 {
	out := make([]float32, n)
	g.fill(out, false)
	return out
}

// RandnHalf is the same draw in torch.float16, widened to float32: the
// kernel computes in float and rounds each value to half on store.
func (g *CUDA) RandnHalf(n int) []float32 {
	out := make([]float32, n)
	g.fill(out, true)
	return out
}

func (g *CUDA) fill(out []float32, toHalf bool) {
	n := len(out)
	if n == 0 {
		return
	}
	threads, offset := g.launch(n)
	step := threads * normalUnroll
	rounded := ((n-1)/step + 1) * step
	for idx := 0; idx < threads; idx++ {
		if idx >= n {
			break // threads past the end only burn their own subsequence
		}
		var st philoxState
		st.init(g.seed, uint64(idx), offset)
		for li := idx; li < rounded; li += step {
			r := st.normal4()
			for ii := 0; ii < normalUnroll; ii++ {
				k := li + threads*ii
				if k < n {
					v := r[ii] // transformation::normal(v, mean=0, std=1) is exact
					if toHalf {
						v = half(v)
					}
					out[k] = v
				}
			}
		}
	}
}

// philoxState is curandStatePhilox4_32_10_t.
type philoxState struct {
	ctr    [4]uint32
	key    [2]uint32
	output [4]uint32
	state  uint32 // index of the next unused word of output
}

const (
	philoxW0 = 0x9E3779B9
	philoxW1 = 0xBB67AE85
	philoxM0 = 0xD2511F53
	philoxM1 = 0xCD9E8D57
)

// philox4x32_10 is curand_Philox4x32_10: ten rounds with a key bump between
// them.
func philox4x32_10(c [4]uint32, k [2]uint32) [4]uint32 {
	for round := 0; round < 10; round++ {
		if round > 0 {
			k[0] += philoxW0
			k[1] += philoxW1
		}
		p0 := uint64(philoxM0) * uint64(c[0])
		p1 := uint64(philoxM1) * uint64(c[2])
		hi0, lo0 := uint32(p0>>32), uint32(p0)
		hi1, lo1 := uint32(p1>>32), uint32(p1)
		c = [4]uint32{hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0}
	}
	return c
}

// init is curand_init(seed, subsequence, offset, state).
func (s *philoxState) init(seed, subsequence, offset uint64) {
	*s = philoxState{key: [2]uint32{uint32(seed), uint32(seed >> 32)}}
	s.incrHi(subsequence)
	s.skipahead(offset)
}

// incrHi is Philox_State_Incr_hi: subsequences advance the high 64 bits of
// the counter.
func (s *philoxState) incrHi(n uint64) {
	nlo, nhi := uint32(n), uint32(n>>32)
	s.ctr[2] += nlo
	if s.ctr[2] < nlo {
		nhi++
	}
	s.ctr[3] += nhi
}

// incr is Philox_State_Incr(state, n), including cuRAND's carry test on the
// second word.
func (s *philoxState) incr(n uint64) {
	nlo, nhi := uint32(n), uint32(n>>32)
	s.ctr[0] += nlo
	if s.ctr[0] < nlo {
		nhi++
	}
	s.ctr[1] += nhi
	if nhi <= s.ctr[1] {
		return
	}
	s.ctr[2]++
	if s.ctr[2] != 0 {
		return
	}
	s.ctr[3]++
}

// incr1 is Philox_State_Incr(state): a full 128-bit increment by one.
func (s *philoxState) incr1() {
	for i := range s.ctr {
		s.ctr[i]++
		if s.ctr[i] != 0 {
			return
		}
	}
}

// skipahead is skipahead(n, state) for Philox: n counts 32-bit values.
func (s *philoxState) skipahead(n uint64) {
	s.state += uint32(n & 3)
	n /= 4
	if s.state > 3 {
		n++
		s.state -= 4
	}
	s.incr(n)
	s.output = philox4x32_10(s.ctr, s.key)
}

// uint4 is curand4: the next four 32-bit values.
func (s *philoxState) uint4() [4]uint32 {
	tmp := s.output
	s.incr1()
	s.output = philox4x32_10(s.ctr, s.key)
	switch s.state {
	case 1:
		return [4]uint32{tmp[1], tmp[2], tmp[3], s.output[0]}
	case 2:
		return [4]uint32{tmp[2], tmp[3], s.output[0], s.output[1]}
	case 3:
		return [4]uint32{tmp[3], s.output[0], s.output[1], s.output[2]}
	}
	return tmp
}

// normal4 is curand_normal4: two Box-Muller pairs from one curand4, each
// pair ordered (sin, cos).
func (s *philoxState) normal4() [4]float32 {
	x := s.uint4()
	a0, a1 := boxMuller(x[0], x[1])
	b0, b1 := boxMuller(x[2], x[3])
	return [4]float32{a0, a1, b0, b1}
}

const (
	curand2Pow32Inv    float32 = 2.3283064e-10                      // CURAND_2POW32_INV, exactly 2^-32
	curand2Pow32Inv2Pi float32 = float32(2.3283064e-10) * 6.2831855 // CURAND_2POW32_INV_2PI, a float product
)

// boxMuller is _curand_box_muller as nvcc compiles it: the affine maps
// contract to fused multiply-adds and the square root is IEEE. The GPU's
// __sincosf scales the angle by 1/(2*pi) with a round-toward-zero multiply
// and evaluates sin(2*pi*r) in the special function unit; the scaling is
// reproduced exactly and the unit's table interpolation (absolute error
// below 2^-21.4) is replaced by a correctly rounded sine and cosine, as is
// CUDA's logf (within one ulp).
func boxMuller(x, y uint32) (float32, float32) {
	u := fmaf(float32(x), curand2Pow32Inv, curand2Pow32Inv/2)
	v := fmaf(float32(y), curand2Pow32Inv2Pi, curand2Pow32Inv2Pi/2)
	s := float32(math.Sqrt(float64(-2 * logf(u))))
	r := mulRZ(v, invTwoPi)
	sn, cs := math.Sincos(2 * math.Pi * float64(r))
	return float32(sn) * s, float32(cs) * s
}

// invTwoPi is the float32 constant 1/(2*pi) that __sinf/__cosf multiply by.
const invTwoPi float32 = 0.15915494

// mulRZ is a float32 product rounded toward zero (FMUL.RZ).
func mulRZ(a, b float32) float32 {
	p := float64(a) * float64(b) // exact
	r := float32(p)
	if math.Abs(float64(r)) > math.Abs(p) {
		r = math.Nextafter32(r, 0)
	}
	return r
}
