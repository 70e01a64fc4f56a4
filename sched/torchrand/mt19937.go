package torchrand

// mt19937 is the 32-bit Mersenne Twister exactly as ATen's at::mt19937
// (ATen/core/MT19937RNGEngine.h): the standard MT19937 of Matsumoto and
// Nishimura, seeded with the low 32 bits of the 64-bit seed by the standard
// initialisation recurrence. It regenerates all 624 words at once when the
// state is exhausted, like the reference implementation, so the output
// stream is identical to std::mt19937 seeded with uint32(seed).
type mt19937 struct {
	state [mtN]uint32
	next  int
}

const (
	mtN         = 624
	mtM         = 397
	mtMatrixA   = 0x9908b0df
	mtUpperMask = 0x80000000
	mtLowerMask = 0x7fffffff
)

func (m *mt19937) seed(seed uint64) {
	// ATen keeps the full 64-bit seed for reporting but initialises the
	// engine from its low 32 bits (seed & 0xffffffff).
	m.state[0] = uint32(seed)
	for j := 1; j < mtN; j++ {
		prev := m.state[j-1]
		m.state[j] = 1812433253*(prev^(prev>>30)) + uint32(j)
	}
	m.next = mtN // force a regeneration before the first output
}

func (m *mt19937) twist() {
	for i := 0; i < mtN; i++ {
		y := (m.state[i] & mtUpperMask) | (m.state[(i+1)%mtN] & mtLowerMask)
		v := m.state[(i+mtM)%mtN] ^ (y >> 1)
		if y&1 != 0 {
			v ^= mtMatrixA
		}
		m.state[i] = v
	}
	m.next = 0
}

// uint32 returns the next tempered output word.
func (m *mt19937) uint32() uint32 {
	if m.next >= mtN {
		m.twist()
	}
	y := m.state[m.next]
	m.next++
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}
