package vae_test

import (
	"fmt"

	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/vae"
)

// The engine asks before decoding whether a size fits, and whether tiling
// (diffusers' enable_tiling, 1024-pixel tiles for SDXL) would make it fit.
func ExampleVAE_DecodeMemory() {
	v, err := vae.New(config.SDXLVAE()) // the config alone: no weights needed
	if err != nil {
		panic(err)
	}
	gib := func(b int64) float64 { return float64(b) / (1 << 30) }
	for _, size := range []int{1024, 4096} {
		whole, _ := v.DecodeMemory(1, size, size, nil)
		tiled, _ := v.DecodeMemory(1, size, size, &vae.Tiling{})
		fmt.Printf("%dx%d: %.1f GiB untiled; with tiling (tiles: %v) %.1f GiB + %.2f GiB on the host\n",
			size, size, gib(whole.Total()), tiled.Tiled, gib(tiled.Device), gib(tiled.Host))
	}
	// Output:
	// 1024x1024: 2.8 GiB untiled; with tiling (tiles: false) 2.8 GiB + 0.00 GiB on the host
	// 4096x4096: 40.3 GiB untiled; with tiling (tiles: true) 2.8 GiB + 0.33 GiB on the host
}
