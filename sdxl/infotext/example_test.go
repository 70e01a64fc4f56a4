package infotext_test

import (
	"fmt"

	"github.com/sdxl-go/sdxl/sdxl/infotext"
)

func ExampleFormat() {
	sampler, schedule, _ := infotext.Sampler("dpmpp_2m", true)
	fmt.Println(infotext.Format(infotext.Params{
		Prompt: "a photo of an astronaut riding a horse on mars", NegativePrompt: "blurry",
		Steps: 30, Sampler: sampler, ScheduleType: schedule, CFGScale: 5, Seed: 42, Width: 1024, Height: 1024,
		ModelHash: "31e35c80fc", Model: "sd_xl_base_1.0", RNG: "CPU", Version: "sdxl-run v1.0.0",
	}))
	// Output:
	// a photo of an astronaut riding a horse on mars
	// Negative prompt: blurry
	// Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, Seed: 42, Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, RNG: CPU, Version: sdxl-run v1.0.0
}

func ExampleParse() {
	p, err := infotext.Parse("a lovely cat\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 965400086, Size: 512x768, Model hash: 45dee52b, Clip skip: 2")
	if err != nil {
		panic(err)
	}
	c, _ := infotext.Scheduler(p.Sampler, p.ScheduleType)
	fmt.Printf("%q %d steps, %s (%s), cfg %g, seed %d, %dx%d\n", p.Prompt, p.Steps, p.Sampler, p.ScheduleType, p.CFGScale, p.Seed, p.Width, p.Height)
	fmt.Printf("--scheduler %s --clip-skip %d\n", c.Scheduler, infotext.DiffusersClipSkip(p.ClipSkip))
	// Output:
	// "a lovely cat" 20 steps, DPM++ 2M (Karras), cfg 7, seed 965400086, 512x768
	// --scheduler dpmpp_2m_karras --clip-skip 0
}
