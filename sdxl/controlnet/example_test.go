package controlnet_test

import (
	"context"
	"fmt"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/controlnet"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/tensor"
)

// A ControlNet built from its config, with random weights here
// (controlnet.Open loads real ones), turns a control image into one
// residual per skip connection of the UNet it is checked against, plus one
// for the mid block: the UNet adds them through unet.Input's DownResiduals
// and MidResidual.
func Example() {
	cfg, err := config.ParseControlNetConfig("config.json", []byte(`{
		"addition_embed_type": "text_time", "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 56,
		"attention_head_dim": 2, "block_out_channels": [16, 32], "conditioning_embedding_out_channels": [8, 16],
		"cross_attention_dim": 24, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "layers_per_block": 1,
		"norm_num_groups": 8, "use_linear_projection": true}`))
	if err != nil {
		panic(err)
	}
	cn, err := controlnet.New(cfg)
	if err != nil {
		panic(err)
	}
	b := cpu.New()
	nn.InitRandom(b, cn, tensor.F32, 1)

	ids, _ := unet.BaseTimeIDs(unet.TimeIDParams{OriginalSize: [2]int{64, 64}, TargetSize: [2]int{64, 64}})
	out, err := cn.Forward(context.Background(), b, controlnet.Input{
		Sample:              b.Zeros(tensor.F32, 1, 4, 8, 8), // latents of a 16x16 image at this model's 2x downscale
		Timesteps:           []float32{500},
		EncoderHiddenStates: b.Zeros(tensor.F32, 1, 77, 24),
		TextEmbeds:          b.Zeros(tensor.F32, 1, 8),
		TimeIDs:             ids,
		Cond:                b.Zeros(tensor.F32, 1, 3, 16, 16), // the control image in [0, 1]
		Scale:               0.5,
	}, nil)
	if err != nil {
		panic(err)
	}
	defer out.Free()
	for _, r := range out.Down {
		fmt.Println(r.Shape())
	}
	fmt.Println("mid", out.Mid.Shape())
	// Output:
	// [1 16 8 8]
	// [1 16 8 8]
	// [1 16 4 4]
	// [1 32 4 4]
	// mid [1 32 4 4]
}
