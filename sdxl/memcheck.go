package sdxl

import (
	"errors"
	"math"
	"runtime/debug"
	"strings"

	"github.com/sdxl-go/sdxl/internal/memlimit"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/memory"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/sdxl/vae"
)

// memoryModel describes m for package memory: its configs and parameter
// counts (counted once, when the engine is made).
func memoryModel(m *Model) *memory.Model {
	if m == nil {
		return nil
	}
	mm := &memory.Model{UNet: m.UNet.Config(), VAE: m.VAE.Config(), Params: map[string]int64{
		"unet": nn.CountParams(m.UNet), "vae": nn.CountParams(m.VAE)}}
	if te := m.Text.TextEncoder; te != nil {
		mm.TextEncoders = append(mm.TextEncoders, te.Config)
		mm.Params["text_encoder"] = nn.CountParams(te)
	}
	if te := m.Text.TextEncoder2; te != nil {
		mm.TextEncoders = append(mm.TextEncoders, te.Config)
		mm.Params["text_encoder_2"] = nn.CountParams(te)
	}
	return mm
}

// memoryBudget resolves Options.MemoryBudget: a positive value as given;
// 0 the device memory a backend with its own memory reports (a
// DeviceMemoryBudgeter: the CUDA backend), the memory this process may use
// when the backend computes in host memory (the CPU backend), else
// unknown; negative: no check.
func memoryBudget(opt Options) int64 {
	if opt.MemoryBudget != 0 {
		return max(opt.MemoryBudget, 0)
	}
	if d, ok := opt.Backend.(DeviceMemoryBudgeter); ok {
		return d.MemoryBudget()
	}
	if opt.Backend.Name() == "cpu" {
		return HostMemoryBudget()
	}
	return 0
}

// DeviceMemoryBudgeter is a backend that computes in memory of its own (a
// GPU's) and can tell how much of it a request may use, in bytes (0:
// unknown), counting what the backend already holds (the loaded weights).
// The engine asks once, when it is made, after the models are loaded.
type DeviceMemoryBudgeter interface {
	MemoryBudget() int64
}

// checkMemory refuses a plan whose memory estimate (package memory) is
// over the engine's budget, naming the field to change and what fits.
func (e *Engine) checkMemory(pl *plan) error {
	if e.budget <= 0 {
		return nil
	}
	r := &pl.req
	first := pl.stages[0]
	mr := memory.Request{Width: r.Width, Height: r.Height, Images: r.NumImages, Guidance: r.Guidance > 1,
		WeightBytes: weightBytes(first.model), ComputeBytes: e.p.activationDType(first.model).Size(), VAEBytes: 4,
		Img2Img: first.img2img && !first.imageIsLatents, Offload: e.p.Offload != nil, LoRABytes: pl.loraBytes}
	// The VAE's own estimates replay its allocations, tiled or not.
	last := pl.stages[len(pl.stages)-1]
	mr.Decode = vaeEstimate(last.model.VAE.DecodeMemory, last.tiling)
	mr.Encode = vaeEstimate(first.model.VAE.EncodeMemory, first.tiling)
	err := memory.Check(mr, e.budget, e.mem...)
	var tl *memory.TooLarge
	if !errors.As(err, &tl) {
		return err
	}
	field := "Width"
	switch {
	case strings.Contains(tl.Fits, "images fit"):
		field = "NumImages"
	case r.hasImage():
		field = "InitImage"
	}
	return fieldErr(field, nil, "%dx%d, %d image(s) %v", r.Width, r.Height, r.NumImages, err)
}

// vaeEstimate adapts a VAE memory estimate (DecodeMemory, EncodeMemory)
// with its tiling to memory.Request's form.
func vaeEstimate(f func(n, width, height int, t *vae.Tiling) (vae.Memory, error), t *vae.Tiling) func(int, int, int) int64 {
	return func(n, width, height int) int64 {
		m, err := f(n, width, height, t)
		if err != nil {
			return 0
		}
		return m.Total()
	}
}

// weightBytes is the storage size of m's UNet weights.
func weightBytes(m *Model) int {
	if ps := nn.Params(m.UNet, ""); len(ps) > 0 {
		return ps[0].Tensor().DType().Size()
	}
	return 4
}

// RandomMemoryModel describes RandomModel(b, refiner, ...) for memory
// estimates before it is built.
func RandomMemoryModel(refiner bool) (*memory.Model, error) {
	d, err := config.RealModelDir(realName(refiner))
	if err != nil {
		return nil, err
	}
	return configMemoryModel(d)
}

// FolderMemoryModel describes the diffusers folder dir for memory
// estimates before it is loaded.
func FolderMemoryModel(dir string) (*memory.Model, error) {
	d, err := config.OpenModelDir(dir)
	if err != nil {
		return nil, err
	}
	return configMemoryModel(d)
}

// configMemoryModel describes the model whose configs d holds: parameters
// are counted on meta models, which allocate no weights.
func configMemoryModel(d *config.ModelDir) (*memory.Model, error) {
	mm := &memory.Model{Params: map[string]int64{}}
	var err error
	if mm.UNet, err = d.UNetConfig(); err != nil {
		return nil, err
	}
	if mm.VAE, err = d.VAEConfig(); err != nil {
		return nil, err
	}
	u, err := unet.New(mm.UNet)
	if err != nil {
		return nil, err
	}
	v, err := vae.New(mm.VAE)
	if err != nil {
		return nil, err
	}
	mm.Params["unet"], mm.Params["vae"] = nn.CountParams(u), nn.CountParams(v)
	for _, sub := range []string{"text_encoder", "text_encoder_2"} {
		if c, ok := d.ModelIndex.Component(sub); !ok || !c.Present() {
			continue
		}
		te, err := metaText(d, sub)
		if err != nil {
			return nil, err
		}
		mm.TextEncoders = append(mm.TextEncoders, te.Config)
		mm.Params[sub] = nn.CountParams(te)
	}
	return mm, nil
}

// HostMemoryBudget is the memory this process may use, in bytes: the
// cgroup limit or the available memory plus what it holds, or the Go
// runtime's memory limit (GOMEMLIMIT) when that is lower; 0 when it cannot
// tell. It is Options.MemoryBudget's default on the CPU.
func HostMemoryBudget() int64 {
	avail := memlimit.Available()
	if l := debug.SetMemoryLimit(-1); l > 0 && l < math.MaxInt64 && (avail == 0 || l < avail) {
		return l
	}
	return avail
}
