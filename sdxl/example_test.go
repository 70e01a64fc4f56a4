package sdxl_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/bundled"
)

// openBundled opens an engine on the small random-weight model that ships
// inside the binary (use a real SDXL folder or single file for pictures).
func openBundled() *sdxl.Engine {
	dir, err := bundled.Dir()
	if err != nil {
		log.Fatal(err)
	}
	e, err := sdxl.Open(context.Background(), sdxl.Options{Backend: cpu.New(), Base: dir})
	if err != nil {
		log.Fatal(err)
	}
	return e
}

// Generate an image: a request, progress events with latent previews, and
// the decoded image (NCHW in [-1, 1]; imageio.FromNCHW makes PNGs of it).
func ExampleEngine_Generate() {
	e := openBundled()
	steps := 0
	res, err := e.Generate(context.Background(), sdxl.Request{
		Prompt: "a photo of an astronaut riding a horse on mars", Steps: 4, Guidance: 5, Seed: 42,
		Progress: func(ev sdxl.Event) error {
			if ev.Latents != nil { // a denoising step
				steps++
				_ = ev.Preview(0) // a cheap RGB picture of the latents
			}
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("image", res.ImageShape, "after", steps, "steps with", res.Scheduler)
	// Output: image [1 3 64 64] after 4 steps with EulerDiscreteScheduler
}

// Check answers a request without running it; errors name the field.
func ExampleEngine_Check() {
	e := openBundled()
	_, err := e.Check(sdxl.Request{Prompt: "a lion", Width: 100})
	var fe *sdxl.FieldError
	if errors.As(err, &fe) {
		fmt.Println(fe.Field, "->", err)
	}
	// Output: Width -> width 100: must be a positive multiple of 8
}

// Record intermediate activations by diffusers module path at every step.
func ExampleRequest_dump() {
	e := openBundled()
	res, err := e.Generate(context.Background(), sdxl.Request{
		Prompt: "a lion", Steps: 2, Guidance: 5, OutputLatents: true,
		Dump: []string{"mid_block.attentions.0.transformer_blocks.0.attn2"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range res.Dumps {
		fmt.Println(a.Name, a.Shape)
	}
	// Output:
	// base.step0.mid_block.attentions.0.transformer_blocks.0.attn2 [2 4 64]
	// base.step1.mid_block.attentions.0.transformer_blocks.0.attn2 [2 4 64]
}

// The token ids both text encoders receive, with the standard SDXL
// tokenizers.
func ExampleLoadTokenizers() {
	t, err := sdxl.LoadTokenizers("")
	if err != nil {
		log.Fatal(err)
	}
	ids, err := t.Encode("a photo of an astronaut!")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ids.Tokenizer[:8])
	fmt.Println(ids.Tokenizer2[:8]) // tokenizer_2 pads with "!" (id 0), so a typed "!" is 0 too
	// Output:
	// [49406 320 1125 539 550 18376 256 49407]
	// [49406 320 1125 539 550 18376 0 49407]
}
