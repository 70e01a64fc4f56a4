package vae

// Memory is the estimated peak memory of one decode or encode, weights
// excluded (see DecodeMemory, EncodeMemory).
type Memory struct {
	// Device is the peak the backend holds: the input, the activations
	// of the largest stage (of one tile when tiled) and the backend's
	// scratch, or the uploaded result.
	Device int64
	// Host is what a tiled pass holds on the host besides: the assembled
	// result and two rows of tiles (0 untiled).
	Host int64
	// Tiled reports whether the pass would tile (tiling asked for and the
	// size above one tile).
	Tiled bool
}

// Total is Device + Host, the figure for the CPU backend, where both live
// in the same memory. (The Go garbage collector lets the heap grow past
// the live peak unless a memory limit, debug.SetMemoryLimit or
// GOMEMLIMIT, holds it near this figure.)
func (m Memory) Total() int64 { return m.Device + m.Host }

// Backend scratch bounds: the CUDA backend's im2col chunk per Conv2D and
// score buffers per attention chunk (backend/cuda convChunkBytes,
// attnChunkBytes); the CPU backend needs far less.
const (
	convScratch = 256 << 20
	attnScratch = 512 << 20
)

// DecodeMemory estimates the peak memory of decoding n latents for a
// width x height image, untiled (t nil) or with tiling t, as Decode and
// DecodeTiled allocate and free their tensors (float32). The engine uses
// it to refuse sizes or to turn tiling on before any work.
func (v *VAE) DecodeMemory(n, width, height int, t *Tiling) (Memory, error) {
	f := v.ScaleFactor()
	h, w := height/f, width/f
	zin := int64(n) * int64(v.cfg.LatentChannels) * int64(h*w) * 4
	out := int64(n) * int64(v.cfg.OutChannels) * int64(f*h*f*w) * 4
	if t == nil {
		return Memory{Device: zin + v.decodePeak(n, h, w)}, nil
	}
	sample, latent, err := v.TileSizes(*t)
	if err != nil {
		return Memory{}, err
	}
	if h <= latent && w <= latent {
		return Memory{Device: zin + v.decodePeak(n, h, w)}, nil
	}
	th, tw := min(h, latent), min(w, latent)
	tile := int64(n) * int64(v.cfg.OutChannels) * int64(sample*sample) * 4
	cols := int64((w + latent - 1) / max(1, latent*3/4))
	return Memory{
		Device: zin + max(v.decodePeak(n, th, tw), out),
		Host:   out + 2*cols*tile,
		Tiled:  true,
	}, nil
}

// EncodeMemory estimates the peak memory of encoding n images of width x
// height to their posterior moments, untiled (t nil) or with tiling t (see
// DecodeMemory).
func (v *VAE) EncodeMemory(n, width, height int, t *Tiling) (Memory, error) {
	f := v.ScaleFactor()
	xin := int64(n) * int64(v.cfg.InChannels) * int64(width*height) * 4
	out := int64(n) * int64(2*v.cfg.LatentChannels) * int64(width/f*height/f) * 4
	if t == nil {
		return Memory{Device: xin + v.encodePeak(n, height, width)}, nil
	}
	sample, latent, err := v.TileSizes(*t)
	if err != nil {
		return Memory{}, err
	}
	if height <= sample && width <= sample {
		return Memory{Device: xin + v.encodePeak(n, height, width)}, nil
	}
	tile := int64(n) * int64(2*v.cfg.LatentChannels) * int64(latent*latent) * 4
	cols := int64((width + sample - 1) / max(1, sample*3/4))
	return Memory{
		Device: xin + max(v.encodePeak(n, min(height, sample), min(width, sample)), out),
		Host:   out + 2*cols*tile,
		Tiled:  true,
	}, nil
}

// memWalk replays a forward pass's allocations and frees (float32
// elements) and keeps the peak in bytes, backend scratch included. As in
// the forward code (see tensor.Scope), each layer consumes its input: it
// is freed after its last read, inside the layer.
type memWalk struct {
	live, peak int64
	// livePeak is the peak without scratch (what the tensors hold).
	livePeak int64
}

func (m *memWalk) alloc(elems int64) { m.allocWith(elems, 0) }

// allocWith allocates an op's output while the op holds scratch bytes.
func (m *memWalk) allocWith(elems, scratch int64) {
	m.live += 4 * elems
	m.livePeak = max(m.livePeak, m.live)
	m.peak = max(m.peak, m.live+scratch)
}

func (m *memWalk) free(elems int64) { m.live -= 4 * elems }

// conv allocates the output (out x p) of a k x k convolution over in
// channels, with the backend's im2col chunk.
func (m *memWalk) conv(in, out, p, k int64) {
	m.allocWith(out*p, min(convScratch, 4*in*k*k*p))
}

// resnet is nn.ResnetBlock2D.Forward over p pixels (batch included).
func (m *memWalk) resnet(in, out, p int64) {
	m.alloc(in * p) // norm1 + SiLU
	m.conv(in, out, p, 3)
	m.free(in * p)
	m.alloc(out * p) // norm2 + SiLU
	m.free(out * p)  // conv1's output
	m.conv(out, out, p, 3)
	m.free(out * p) // norm2's output
	if in != out {
		m.conv(in, out, p, 1) // conv_shortcut, the input's last read
		m.free(in * p)
	}
	m.alloc(out * p) // skip + conv2
	m.free(out * p)  // conv2's output
	m.free(out * p)  // the shortcut's output or the input
}

// attention is the mid block's one-head nn.Attention.ForwardSpatial over
// t tokens of c features, batch n.
func (m *memWalk) attention(n, c, t int64) {
	x := n * c * t
	m.alloc(x) // group norm
	m.alloc(x) // [B, HW, C] permute
	m.free(x)
	m.alloc(3 * x) // q, k, v; the sequence's last read is v
	m.free(x)
	m.alloc(3 * x) // per-head permutes, each freeing its projection
	m.free(3 * x)
	// Packed K and V on the CPU; score chunks on CUDA.
	m.allocWith(x, min(attnScratch, 2*4*n*t*t)+2*4*x)
	m.free(3 * x)
	m.alloc(x) // heads merged back
	m.free(x)
	m.alloc(x) // to_out
	m.free(x)
	m.alloc(x) // [B, C, HW] permute
	m.free(x)
	m.alloc(x) // + residual
	m.free(x)
	m.free(x) // the input
}

// mid is MidBlock.forward over p pixels of c channels.
func (m *memWalk) mid(n, c, p int64, attn bool) {
	m.resnet(c, c, n*p)
	if attn {
		m.attention(n, c, p)
	}
	m.resnet(c, c, n*p)
}

// upsample is Upsample2D (nearest 2x, then a 3x3 conv) of c x p.
func (m *memWalk) upsample(c, p int64) {
	m.alloc(4 * c * p)
	m.free(c * p)
	m.conv(c, c, 4*p, 3)
	m.free(4 * c * p)
}

// downsample is the encoder's Downsample2D of c x h x w (batch in c):
// one zero column and one zero row concatenated, then the stride-2 conv.
func (m *memWalk) downsample(c, h, w int64) {
	m.alloc(c * h)           // zero column
	m.alloc(c * h * (w + 1)) // wide
	m.free(c * h * w)
	m.free(c * h)
	m.alloc(c * (w + 1))           // zero row
	m.alloc(c * (h + 1) * (w + 1)) // padded
	m.free(c * h * (w + 1))
	m.free(c * (w + 1))
	m.conv(c, c, (h/2)*(w/2), 3)
	m.free(c * (h + 1) * (w + 1))
}

// normActConv is conv_norm_out + SiLU, then conv_out from in to out
// channels over p pixels.
func (m *memWalk) normActConv(in, out, p int64) {
	m.alloc(in * p)
	m.free(in * p)
	m.conv(in, out, p, 3)
	m.free(in * p)
}

// decodePeak is the peak of Decode on n latents of h x w, the input
// excluded.
func (v *VAE) decodePeak(n, h, w int) int64 { return v.decodeWalk(n, h, w).peak }

// encodePeak is the peak of Moments on n images of H x W, the input
// excluded.
func (v *VAE) encodePeak(n, H, W int) int64 { return v.encodeWalk(n, H, W).peak }

// decodeWalk replays Decode on n latents of h x w.
func (v *VAE) decodeWalk(n, h, w int) *memWalk {
	c := v.cfg
	N, p := int64(n), int64(h*w)
	chans := c.BlockOutChannels
	L, top := int64(c.LatentChannels), int64(chans[len(chans)-1])
	m := &memWalk{}
	if c.UsePostQuantConv {
		m.conv(L, L, N*p, 1)
	}
	m.conv(L, top, N*p, 3) // conv_in
	if c.UsePostQuantConv {
		m.free(N * L * p)
	}
	m.mid(N, top, p, c.MidBlockAddAttention)
	prev := top
	for i := range chans {
		out := int64(chans[len(chans)-1-i])
		for j := range c.LayersPerBlock + 1 {
			in := out
			if j == 0 {
				in = prev
			}
			m.resnet(in, out, N*p)
		}
		if i < len(chans)-1 {
			m.upsample(out, N*p)
			p *= 4
		}
		prev = out
	}
	m.normActConv(int64(chans[0]), int64(c.OutChannels), N*p)
	return m
}

// encodeWalk replays Moments on n images of H x W.
func (v *VAE) encodeWalk(n, H, W int) *memWalk {
	c := v.cfg
	N, h, w := int64(n), int64(H), int64(W)
	chans := c.BlockOutChannels
	m := &memWalk{}
	m.conv(int64(c.InChannels), int64(chans[0]), N*h*w, 3)
	out := int64(chans[0])
	for i := range chans {
		in := out
		out = int64(chans[i])
		for j := range c.LayersPerBlock {
			rin := out
			if j == 0 {
				rin = in
			}
			m.resnet(rin, out, N*h*w)
		}
		if i < len(chans)-1 {
			m.downsample(N*out, h, w)
			h, w = h/2, w/2
		}
	}
	p := h * w
	m.mid(N, out, p, c.MidBlockAddAttention)
	L2 := int64(2 * c.LatentChannels)
	m.normActConv(out, L2, N*p)
	if c.UseQuantConv {
		m.conv(L2, L2, N*p, 1)
		m.free(N * L2 * p)
	}
	return m
}
