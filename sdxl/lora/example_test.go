package lora_test

import (
	"context"
	"fmt"

	"github.com/sdxl-go/sdxl/sdxl/lora"
)

func ExampleParseTags() {
	clean, tags := lora.ParseTags("a castle <lora:pixel-art:0.8>, sunset <lora:detail>")
	fmt.Printf("%q\n", clean)
	for _, t := range tags {
		l, err := t.LoRA()
		fmt.Println(l.Name, l.UNetScale, l.TextScale, err)
	}
	// Output:
	// "a castle , sunset "
	// pixel-art 0.8 0.8 <nil>
	// detail 1 1 <nil>
}

func ExampleParseSpec() {
	for _, s := range []string{"style.safetensors", "style.safetensors:0.6", `C:\loras\style.safetensors`} {
		path, scale, err := lora.ParseSpec(s)
		fmt.Println(path, scale, err)
	}
	// Output:
	// style.safetensors 1 <nil>
	// style.safetensors 0.6 <nil>
	// C:\loras\style.safetensors 1 <nil>
}

// A LoRA merged into a loaded model, then switched off again.
func ExampleApplier() {
	f, err := lora.Load("pixel-art.safetensors")
	if err != nil {
		fmt.Println(err)
		return
	}
	var m struct{ target lora.Target } // e.g. lora.Target{UNet: model.UNet, TextEncoder: ..., TextEncoder2: ...}
	ap, err := lora.NewApplier(m.target)
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = ap.Set(context.Background(), []lora.Use{lora.Scaled(f, 0.8)}) // merge
	ap.Clear()                                                        // the original weights, bit for bit
}
