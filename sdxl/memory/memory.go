// Package memory estimates the memory a generation request needs, per
// device, from the model configs, the image size, the batch and the dtypes
// alone, so that an engine can refuse a request that cannot fit (a
// 65536x65536 image, 100000 images, a 16384x16384 input) in well under a
// second, with a message that says what would fit, instead of running for
// minutes into an out-of-memory crash.
//
// The estimate counts the weights (from parameter counts) and the largest
// set of live activations of each stage: the text encoders, one UNet
// forward (the skip connections kept for the up blocks plus the working set
// of the widest block), and the VAE encode and decode at full resolution
// (the decoder's last block, untiled unless the caller supplies a tiled
// figure). The formulas follow the tensors the layers in sdxl/unet and
// sdxl/vae keep alive, with a margin (Slack) for allocator and runtime
// overhead; TestEstimateCoversMeasuredPeak checks them against measured
// peaks of the CPU backend.
package memory

import (
	"fmt"
	"strings"

	"github.com/sdxl-go/sdxl/sdxl/config"
)

// Slack multiplies every activation estimate: buffers the formulas do not
// count in proportion (allocator rounding, the collector's lag on the CPU
// backend, a backend's own copies).
const Slack = 1.25

// Overhead is a fixed allowance for what does not grow with the image:
// the runtime, per-thread tiles (im2col, attention scores, packed
// operands) and small tensors (text context, embeddings).
const Overhead = 256 << 20

// Model is what the estimate reads of one model (base or refiner).
type Model struct {
	UNet *config.UNetConfig
	VAE  *config.VAEConfig
	// TextEncoders are the model's text encoder configs (one or two).
	TextEncoders []*config.TextEncoderConfig
	// Params counts the parameters of each component by name ("unet",
	// "vae", "text_encoder", "text_encoder_2"), e.g. nn.CountParams of the
	// loaded or meta models.
	Params map[string]int64
}

// Request is the part of a generation request that sizes memory.
type Request struct {
	// Width and Height are the image size in pixels.
	Width, Height int
	// Images is the number of images (batch size).
	Images int
	// Guidance doubles the UNet batch (classifier-free guidance).
	Guidance bool
	// WeightBytes is the storage size of a UNet or text-encoder weight
	// element (4 for float32, 2 for float16); ComputeBytes that of a UNet
	// activation; VAEBytes that of a VAE weight and activation (SDXL's VAE
	// runs in float32: 4). Zero means 4.
	WeightBytes, ComputeBytes, VAEBytes int
	// Img2Img is set when the VAE encodes a Width x Height input image.
	Img2Img bool
	// Decode and Encode, when set, replace the formulas for the VAE decode
	// of images at width x height and the encode of one image, in bytes
	// (the VAE's own DecodeMemory and EncodeMemory replay its allocations,
	// tiled or not; the formulas serve where only the configs are at hand,
	// and where these return 0).
	Decode, Encode func(images, width, height int) int64
	// Offload keeps the weights on the host and puts one component at a
	// time on the device.
	Offload bool
	// WeightsLoaded is set when the weights are already in memory (an open
	// engine): only activations are still to be allocated.
	WeightsLoaded bool
	// LoRABytes are the merged copies of the weights LoRAs change (the
	// originals stay alive beside them, see sdxl/lora): on the device, or
	// with Offload on the host with the other weights.
	LoRABytes int64
}

// Stage is one stage's activation peak.
type Stage struct {
	Name  string // "text", "unet", "vae encode", "vae decode"
	Bytes int64
}

// Estimate is a request's memory need on the compute device.
type Estimate struct {
	// Weights are the bytes of weights on the device during the largest
	// stage (all of them, or with Offload the largest component).
	Weights int64
	// HostWeights are the weights kept on the host with Offload.
	HostWeights int64
	// Stages holds each stage's activation peak; Peak is the largest.
	Stages []Stage
	Peak   Stage
}

// Total is what the device needs at the peak: weights, the largest
// stage's activations and the fixed Overhead.
func (e Estimate) Total() int64 { return e.Weights + e.Peak.Bytes + Overhead }

// String summarises the estimate, e.g. "12.4 GiB (weights 6.9 GiB, vae
// decode 5.5 GiB)".
func (e Estimate) String() string {
	return fmt.Sprintf("%s (weights %s, %s %s)", GiB(e.Total()), GiB(e.Weights), e.Peak.Name, GiB(e.Peak.Bytes))
}

// GiB formats bytes in GiB with one decimal (MiB below 1 GiB).
func GiB(b int64) string {
	if b < 1<<30 {
		return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
}

func orFour(b int) int64 {
	if b <= 0 {
		return 4
	}
	return int64(b)
}

// Of estimates r for the models that run it (the base, the refiner or
// both; a model may be nil).
func Of(r Request, models ...*Model) Estimate {
	var e Estimate
	var largest, all int64
	for _, m := range models {
		if m == nil {
			continue
		}
		for comp, n := range m.Params {
			b := n * orFour(r.WeightBytes)
			if strings.HasPrefix(comp, "vae") {
				b = n * orFour(r.VAEBytes)
			}
			all += b
			largest = max(largest, b)
		}
		e.Stages = append(e.Stages, stagesOf(m, r)...)
	}
	e.Weights = all + r.LoRABytes
	if r.Offload {
		e.Weights, e.HostWeights = largest, all+r.LoRABytes
	}
	for _, s := range e.Stages {
		if s.Bytes > e.Peak.Bytes {
			e.Peak = s
		}
	}
	return e
}

// stagesOf estimates each stage of one model.
func stagesOf(m *Model, r Request) []Stage {
	batch := int64(max(r.Images, 1))
	unetBatch := batch
	if r.Guidance {
		unetBatch *= 2
	}
	var out []Stage
	if len(m.TextEncoders) > 0 {
		var text int64
		for _, te := range m.TextEncoders {
			text = max(text, textFloats(te))
		}
		out = append(out, Stage{"text", slack(text * unetBatch * 4)})
	}
	if m.UNet != nil {
		lh, lw := r.Height/8, r.Width/8
		if m.VAE != nil {
			f := m.VAE.DownsampleFactor()
			lh, lw = r.Height/f, r.Width/f
		}
		out = append(out, Stage{"unet", slack(unetFloats(m.UNet, lh, lw) * unetBatch * orFour(r.ComputeBytes))})
	}
	if m.VAE != nil {
		vb := orFour(r.VAEBytes)
		if r.Img2Img {
			enc := slack(encodeFloats(m.VAE, r.Height, r.Width) * vb)
			if v := call(r.Encode, 1, r.Width, r.Height); v > 0 {
				enc = v
			}
			out = append(out, Stage{"vae encode", enc})
		}
		// The batch is decoded at once, as diffusers does.
		dec := slack(decodeFloats(m.VAE, r.Height, r.Width) * batch * vb)
		if v := call(r.Decode, int(batch), r.Width, r.Height); v > 0 {
			dec = v
		}
		out = append(out, Stage{"vae decode", dec})
	}
	return out
}

// call returns f(n, w, h), or 0 for a nil f.
func call(f func(int, int, int) int64, n, w, h int) int64 {
	if f == nil {
		return 0
	}
	return f(n, w, h)
}

func slack(b int64) int64 { return int64(float64(b) * Slack) }

// textFloats is one prompt encoding's live floats: the hidden states of
// every layer (kept for clip_skip and the penultimate layer) plus a layer's
// working set (attention and the MLP's intermediate width).
func textFloats(c *config.TextEncoderConfig) int64 {
	t, h := int64(c.MaxPositionEmbeddings), int64(c.HiddenSize)
	return t*h*int64(c.NumHiddenLayers+1) + t*(8*h+2*int64(c.IntermediateSize))
}

// levelPixels is the pixel count at level i of a UNet or VAE whose level 0
// is h x w (each level halves both sides, rounding up as a stride-2
// convolution with padding does).
func levelPixels(h, w, i int) int64 {
	for range i {
		h, w = (h+1)/2, (w+1)/2
	}
	return int64(h) * int64(w)
}

// unetFloats is one image's live floats at the peak of a UNet forward on
// h x w latents: the skip connections every down block keeps for the up
// blocks, plus the working set of the widest resnet or transformer.
func unetFloats(c *config.UNetConfig, h, w int) int64 {
	n := len(c.BlockOutChannels)
	ch := func(i int) int64 { return int64(c.BlockOutChannels[min(i, n-1)]) }
	skip := ch(0) * levelPixels(h, w, 0) // conv_in
	var work int64
	for i := range n {
		p := levelPixels(h, w, i)
		skip += int64(c.LayersPerBlock[i]) * ch(i) * p
		if i < n-1 {
			skip += ch(i) * levelPixels(h, w, i+1) // the downsampler's output
		}
		// An up-block resnet: the concatenated input (its own width plus
		// the skip's) and about three outputs of its width alive at once
		// (each intermediate is dropped once used).
		cin := ch(i) + ch(i+1)
		work = max(work, (cin+3*ch(i))*p)
		if strings.Contains(c.DownBlockTypes[i], "Attn") || strings.Contains(c.UpBlockTypes[n-1-i], "Attn") {
			// A transformer block's feed-forward, its widest part per
			// token: the residual stream, the normalised input, GEGLU's 8x
			// projection and 4x product, and the block's input kept for the
			// residual (16 widths in all).
			work = max(work, 16*ch(i)*p)
		}
	}
	return skip + work
}

// decodeFloats is one image's live floats at the peak of an untiled VAE
// decode to h x w pixels: the widest resnet of the decoder's last levels,
// where the resolution is highest.
func decodeFloats(c *config.VAEConfig, h, w int) int64 {
	n := len(c.BlockOutChannels)
	var peak int64
	for lvl := range n { // lvl 0 is full resolution
		p := levelPixels(h, w, lvl)
		cout := int64(c.BlockOutChannels[lvl])
		cin := int64(c.BlockOutChannels[min(lvl+1, n-1)])
		// The first resnet of the up block at this level: its input (the
		// upsampled output of the level below) and about three outputs of
		// its width alive at once.
		peak = max(peak, (cin+3*cout)*p)
	}
	return int64(max(c.LatentChannels, c.OutChannels))*int64(h)*int64(w)/64 + peak
}

// encodeFloats is one image's live floats at the peak of an untiled VAE
// encode of h x w pixels: the input, and a resnet at full resolution.
func encodeFloats(c *config.VAEConfig, h, w int) int64 {
	n := len(c.BlockOutChannels)
	var peak int64
	for lvl := range n {
		p := levelPixels(h, w, lvl)
		cin := int64(c.BlockOutChannels[max(lvl-1, 0)])
		cout := int64(c.BlockOutChannels[lvl])
		// The encoder keeps a resnet's input for the residual while its
		// convolutions run: four outputs of its width besides.
		peak = max(peak, (cin+4*cout)*p)
	}
	return int64(c.InChannels)*int64(h)*int64(w) + peak
}
