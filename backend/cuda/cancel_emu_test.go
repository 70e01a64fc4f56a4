package cuda

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/tensor"
)

// TestEmulatedCancel cancels a UNet forward and a VAE decode on the kernel
// emulator from a recorder after their mid blocks: both return
// context.Canceled and the device memory in use is back where it was,
// without help from the garbage collector.
func TestEmulatedCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("short: an emulated forward takes seconds")
	}
	b := newEmuBackend(t, Options{})
	m := &pipeModels{b: b, dt: tensor.F32}
	base := m.model(t, "small/models/sdxl-small-base")
	u := base.UNet
	fill := func(shape ...int) *tensor.Tensor { return b.Zeros(tensor.F32, shape...) }
	pos, neg := unet.BaseTimeIDs(unet.TimeIDParams{OriginalSize: [2]int{64, 64}, TargetSize: [2]int{64, 64}})
	in := unet.Input{
		Sample: fill(2, u.InChannels(), 8, 8), Timesteps: []float32{500},
		EncoderHiddenStates: fill(2, 77, u.CrossAttentionDim()),
		TextEmbeds:          fill(2, u.ProjectionClassEmbeddingsInputDim()-len(pos)*u.AdditionTimeEmbedDim()),
		TimeIDs:             append(neg, pos...),
	}
	z := fill(1, 4, 8, 8)
	run := map[string]func(context.Context, nn.Recorder) (*tensor.Tensor, error){
		"unet": func(ctx context.Context, rec nn.Recorder) (*tensor.Tensor, error) { return u.Forward(ctx, b, in, rec) },
		"vae": func(ctx context.Context, rec nn.Recorder) (*tensor.Tensor, error) {
			return base.VAE.Decode(ctx, b, rec, z)
		},
	}
	for name, f := range run {
		if err := b.Sync(); err != nil {
			t.Fatal(err)
		}
		before := b.MemStats().InUse
		ctx, cancel := context.WithCancel(context.Background())
		out, err := f(ctx, nn.RecorderFunc(func(path string, _ *tensor.Tensor) {
			if strings.HasSuffix(path, "mid_block") {
				cancel()
			}
		}))
		cancel()
		if !errors.Is(err, context.Canceled) || out != nil {
			t.Errorf("%s: result %v, error %v; want context.Canceled", name, out, err)
		}
		if err := b.Sync(); err != nil {
			t.Fatal(err)
		}
		if got := b.MemStats().InUse; got != before {
			t.Errorf("%s: device memory in use went from %d to %d bytes", name, before, got)
		}
	}
}
