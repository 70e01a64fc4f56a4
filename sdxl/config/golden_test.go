package config_test

import (
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/clip"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/sdxl/vae"
)

// goldenDir is one golden diffusers folder and what the tests expect of it.
type goldenDir struct {
	rel string
	// variants maps the variant to load ("" = default files) to the
	// stored dtype expected in every component's weights.
	variants map[string]safetensors.DType
	refiner  bool
	// params are the per-component parameter counts (tiny: from
	// golden/tiny/manifest.json; small: none published).
	params map[string]int64
}

var goldenDirs = []goldenDir{
	{"tiny/models/sdxl-tiny-base", map[string]safetensors.DType{"": safetensors.F32, "fp16": safetensors.F16}, false,
		map[string]int64{"unet": 15416, "vae": 658375, "text_encoder": 68473, "text_encoder_2": 69497}},
	{"tiny/models/sdxl-tiny-refiner", map[string]safetensors.DType{"": safetensors.F32}, true,
		map[string]int64{"unet": 1926340, "vae": 658375, "text_encoder_2": 69497}},
	// The small models are stored in fp16 under the default names.
	{"small/models/sdxl-small-base", map[string]safetensors.DType{"": safetensors.F16}, false, nil},
	{"small/models/sdxl-small-refiner", map[string]safetensors.DType{"": safetensors.F16}, true, nil},
}

// TestGoldenModelDirs opens every golden diffusers folder, parses each
// component config, checks the cross-component consistency SDXL needs,
// resolves the weight files per variant like DiffusionPipeline does, and
// requires the weights to hold exactly the keys and shapes derived from the
// configs.
func TestGoldenModelDirs(t *testing.T) {
	for _, g := range goldenDirs {
		t.Run(filepath.Base(g.rel), func(t *testing.T) {
			d, err := config.OpenModelDir(golden.Path(t, g.rel))
			if err != nil {
				t.Fatal(err)
			}
			mi := d.ModelIndex
			if mi.RequiresAestheticsScore != g.refiner || mi.ForceZerosForEmptyPrompt == g.refiner {
				t.Errorf("model_index: requires_aesthetics_score %v, force_zeros %v", mi.RequiresAestheticsScore, mi.ForceZerosForEmptyPrompt)
			}
			unet, err := d.UNetConfig()
			if err != nil {
				t.Fatal(err)
			}
			vae, err := d.VAEConfig()
			if err != nil {
				t.Fatal(err)
			}
			te2, err := d.TextEncoderConfig("text_encoder_2")
			if err != nil {
				t.Fatal(err)
			}
			var te1 *config.TextEncoderConfig
			if g.refiner {
				if _, err := d.TextEncoderConfig("text_encoder"); err == nil {
					t.Error("refiner has a text_encoder")
				}
			} else if te1, err = d.TextEncoderConfig("text_encoder"); err != nil {
				t.Fatal(err)
			}
			// Every key of the golden configs is understood.
			for what, u := range map[string][]string{"unet": unet.Unused, "vae": vae.Unused, "text_encoder_2": te2.Unused} {
				if len(u) != 0 {
					t.Errorf("%s: unused config keys %v", what, u)
				}
			}
			if len(vae.NonSDXL()) != 0 || !te2.WithProjection() {
				t.Errorf("non-SDXL settings: vae %v; te2 with projection %v", vae.NonSDXL(), te2.WithProjection())
			}
			// The pipeline's own consistency rules.
			ctx := te2.HiddenSize
			if te1 != nil {
				ctx += te1.HiddenSize
				if te1.WithProjection() || len(te1.Unused) != 0 {
					t.Errorf("text_encoder: with projection %v, unused %v", te1.WithProjection(), te1.Unused)
				}
			}
			for i, c := range unet.CrossAttentionDim {
				if c != ctx {
					t.Errorf("cross_attention_dim[%d] = %d, text encoders give %d", i, c, ctx)
				}
			}
			wantIDs := 6
			if g.refiner {
				wantIDs = 5
			}
			if n := addTimeIDs(unet, te2); n != wantIDs {
				t.Errorf("add time ids: %d, want %d", n, wantIDs)
			}
			if vae.LatentChannels != unet.InChannels || vae.ScalingFactor != 0.13025 {
				t.Errorf("vae latent channels %d vs unet in %d; scaling %g", vae.LatentChannels, unet.InChannels, vae.ScalingFactor)
			}
			if p, err := d.SchedulerConfigPath(); err != nil || filepath.Base(p) != "scheduler_config.json" {
				t.Errorf("scheduler config: %q %v", p, err)
			}

			want := metaShapes(t, unet, vae, te1, te2)
			for _, variant := range sortedKeys(g.variants) {
				dt := g.variants[variant]
				per, err := d.PipelineVariants(variant)
				if err != nil {
					t.Fatal(err)
				}
				for _, comp := range sortedKeys(want) {
					shapes := want[comp]
					v := per[comp]
					files, err := d.WeightFiles(comp, v)
					if err != nil {
						t.Fatal(err)
					}
					ws, err := d.OpenWeights(comp, v)
					if err != nil {
						t.Fatal(err)
					}
					got := map[string][]int{}
					for _, n := range ws.Names() {
						in, _ := ws.Info(n)
						got[n] = in.Shape
						wantDT := dt
						if v == "" && variant != "" {
							wantDT = g.variants[""] // fell back to the default files
						}
						if in.DType != wantDT {
							t.Errorf("%s %s: %s is %s, want %s", comp, files, n, in.DType, wantDT)
							break
						}
					}
					compareShapes(t, comp+" "+strings.Join(files, ","), got, shapes)
					if p, ok := g.params[comp]; ok && numel(shapes) != p {
						t.Errorf("%s: configs give %d parameters, manifest %d", comp, numel(shapes), p)
					}
					// Read one tensor through the set to prove the lookup.
					first := ws.Names()[0]
					in, _ := ws.Info(first)
					buf := make([]float32, in.Numel())
					if err := ws.ReadFloat32(first, buf); err != nil {
						t.Error(err)
					}
					t.Logf("variant %q: %s loads %s (%d tensors, %d parameters, %s)", variant, comp, relPath(files), ws.Len(), numel(shapes), in.DType)
					ws.Close()
				}
			}
		})
	}
}

// metaShapes builds the meta models of the configs and lists every
// parameter with its shape under the names the checkpoints use:
// transformers 5 saves CLIPTextModel without the text_model. prefix and
// CLIPTextModelWithProjection with it (but for text_projection).
func metaShapes(t *testing.T, u *config.UNetConfig, v *config.VAEConfig, te1, te2 *config.TextEncoderConfig) map[string]map[string][]int {
	t.Helper()
	shapes := func(m any, err error) map[string][]int {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]int{}
		for _, p := range nn.Params(m, "") {
			out[p.Name] = p.Tensor().Shape()
		}
		return out
	}
	out := map[string]map[string][]int{}
	out["unet"] = shapes(unet.New(u))
	out["vae"] = shapes(vae.New(v))
	out["text_encoder_2"] = map[string][]int{}
	for k, sh := range shapes(clip.New(te2)) {
		if k != "text_projection.weight" {
			k = "text_model." + k
		}
		out["text_encoder_2"][k] = sh
	}
	if te1 != nil {
		out["text_encoder"] = shapes(clip.New(te1))
	}
	return out
}

func numel(s map[string][]int) int64 {
	var n int64
	for _, sh := range s {
		p := int64(1)
		for _, d := range sh {
			p *= int64(d)
		}
		n += p
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func relPath(files []string) string {
	var out []string
	for _, f := range files {
		out = append(out, filepath.Join(filepath.Base(filepath.Dir(f)), filepath.Base(f)))
	}
	return strings.Join(out, ",")
}

// TestGoldenVariantFallback checks diffusers' variant rules on the golden
// folders: the tiny base has fp16 files for unet and both text encoders but
// not for the VAE, which a pipeline load falls back to and a component
// load refuses; folders without any fp16-named file refuse the variant.
func TestGoldenVariantFallback(t *testing.T) {
	root := golden.Path(t, "tiny/models/sdxl-tiny-base")
	d, err := config.OpenModelDir(root)
	if err != nil {
		t.Fatal(err)
	}
	per, err := d.PipelineVariants("fp16")
	if err != nil {
		t.Fatal(err)
	}
	wantPer := map[string]string{"unet": "fp16", "text_encoder": "fp16", "text_encoder_2": "fp16", "vae": "", "scheduler": ""}
	if !reflect.DeepEqual(per, wantPer) {
		t.Errorf("PipelineVariants(fp16) = %v, want %v", per, wantPer)
	}
	files, err := d.WeightFiles("unet", "fp16")
	if err != nil || len(files) != 1 || filepath.Base(files[0]) != "diffusion_pytorch_model.fp16.safetensors" {
		t.Errorf("unet fp16: %v %v", files, err)
	}
	files, err = d.WeightFiles("text_encoder", "fp16")
	if err != nil || len(files) != 1 || filepath.Base(files[0]) != "model.fp16.safetensors" {
		t.Errorf("text_encoder fp16: %v %v", files, err)
	}
	_, err = d.WeightFiles("vae", "fp16")
	if err == nil || !strings.Contains(err.Error(), "diffusion_pytorch_model.fp16.safetensors") || !strings.Contains(err.Error(), filepath.Join(root, "vae")) ||
		!strings.Contains(err.Error(), "it has diffusion_pytorch_model.safetensors") {
		t.Errorf("vae fp16 error: %v", err)
	}
	t.Logf("component load of a missing variant: %v", err)
	if _, err := d.PipelineVariants("bf16"); err == nil || !strings.Contains(err.Error(), `variant "bf16"`) {
		t.Errorf("unknown variant: %v", err)
	}
	if _, err := d.WeightFiles("unet", "bf16"); err == nil || !strings.Contains(err.Error(), "diffusion_pytorch_model.bf16.safetensors") {
		t.Errorf("unet bf16: %v", err)
	}
	for _, rel := range []string{"tiny/models/sdxl-tiny-refiner", "small/models/sdxl-small-base"} {
		dd, err := config.OpenModelDir(golden.Path(t, rel))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dd.PipelineVariants("fp16"); err == nil {
			t.Errorf("%s: fp16 variant accepted without fp16-named files", rel)
		}
	}
}
