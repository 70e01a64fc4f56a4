package singlefile

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
)

func readKeys(t *testing.T, rel string) map[string][]int {
	t.Helper()
	b, err := os.ReadFile(golden.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string][]int
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkBijection maps every diffusers key and checks that the images are
// exactly the single-file keys, with matching shapes.
func checkBijection(t *testing.T, hf, sgm map[string][]int, prefix string, mapName func(string) (string, []int)) {
	t.Helper()
	used := map[string]string{}
	for k, shape := range hf {
		s, want := mapName(k)
		s = prefix + s
		got, ok := sgm[s]
		if !ok {
			t.Errorf("%s -> %s: not in the single-file list", k, s)
			continue
		}
		if want == nil {
			want = shape
		}
		if !sameShape(got, want) {
			t.Errorf("%s -> %s: shape %v, want %v", k, s, got, want)
		}
		if prev, dup := used[s]; dup {
			t.Errorf("%s and %s both map to %s", prev, k, s)
		}
		used[s] = k
	}
	n := 0
	for k := range sgm {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			n++
			if _, ok := used[k]; !ok {
				t.Errorf("single-file key %s has no diffusers counterpart", k)
			}
		}
	}
	t.Logf("%d keys under %q map one to one", n, prefix)
}

func TestBaseUNetFullKeys(t *testing.T) {
	hf := readKeys(t, "full-keys/sdxl-base-unet.json")
	sgm := readKeys(t, "full-keys/sdxl-base-singlefile-unet-vae.json")
	l := LayoutFromBlockTypes(
		[]string{"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"},
		[]string{"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}, 2)
	checkBijection(t, hf, sgm, UNetPrefix, func(k string) (string, []int) { return l.UNetName(k), nil })
}

func TestVAEFullKeys(t *testing.T) {
	hf := readKeys(t, "full-keys/sdxl-base-vae.json")
	sgm := readKeys(t, "full-keys/sdxl-base-singlefile-unet-vae.json")
	checkBijection(t, hf, sgm, VAEPrefix, func(k string) (string, []int) {
		s, conv := VAEName(k, 4)
		if conv {
			return s, append(append([]int(nil), hf[k]...), 1, 1)
		}
		return s, nil
	})
}

func TestTextEncodersFullKeys(t *testing.T) {
	sgm := readKeys(t, "full-keys/sdxl-base-singlefile-text-encoders.json")
	te1 := readKeys(t, "full-keys/sdxl-text-encoder.json")
	checkBijection(t, te1, sgm, CLIPPrefix, func(k string) (string, []int) { return k, nil })

	te2 := readKeys(t, "full-keys/sdxl-text-encoder-2.json")
	prefix := OpenCLIPPrefix(Base)
	used := map[string]int{}
	for k, shape := range te2 {
		s, part, tr := OpenCLIPName(k)
		got, ok := sgm[prefix+s]
		if !ok {
			t.Errorf("%s -> %s: not in the single-file list", k, s)
			continue
		}
		want := shape
		switch {
		case part >= 0:
			want = append([]int{3 * shape[0]}, shape[1:]...)
		case tr:
			want = []int{shape[1], shape[0]}
		}
		if !sameShape(got, want) {
			t.Errorf("%s -> %s: shape %v, want %v", k, s, got, want)
		}
		used[prefix+s]++
	}
	for k := range sgm {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix && used[k] == 0 {
			t.Errorf("single-file key %s unused", k)
		}
	}
	t.Logf("%d OpenCLIP keys checked", len(te2))
}

func TestDetect(t *testing.T) {
	base := map[string]bool{"conditioner.embedders.1.model.ln_final.weight": true, CLIPPrefix + "final_layer_norm.weight": true}
	if k, err := Detect(func(n string) bool { return base[n] }); k != Base || err != nil {
		t.Errorf("base: %v %v", k, err)
	}
	ref := map[string]bool{"conditioner.embedders.0.model.ln_final.weight": true}
	if k, err := Detect(func(n string) bool { return ref[n] }); k != Refiner || err != nil {
		t.Errorf("refiner: %v %v", k, err)
	}
	if _, err := Detect(func(string) bool { return false }); err == nil {
		t.Error("empty file detected as SDXL")
	}
}

func TestIgnorable(t *testing.T) {
	for _, k := range []string{"conditioner.embedders.0.transformer.text_model.embeddings.position_ids",
		"conditioner.embedders.1.model.logit_scale", "denoiser.sigmas", "alphas_cumprod", "model_ema.decay"} {
		if !Ignorable(k) {
			t.Errorf("%s should be ignorable", k)
		}
	}
	for _, k := range []string{"model.diffusion_model.out.2.weight", "first_stage_model.encoder.conv_in.bias", "lora_unet_foo"} {
		if Ignorable(k) {
			t.Errorf("%s must not be ignored", k)
		}
	}
}
