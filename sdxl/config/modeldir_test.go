package config_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/vae"
)

// copyTinyBase copies the tiny base pipeline into a writable temp folder.
func copyTinyBase(t *testing.T) string {
	t.Helper()
	src := golden.Path(t, "tiny/models/sdxl-tiny-base")
	dst := filepath.Join(t.TempDir(), "sdxl-tiny-base")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one containing %q", what, parts)
		return
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not contain %q", what, err, p)
			return
		}
	}
}

// TestModelDirErrors: missing files, bad JSON and wrong components are
// reported with the file at fault.
func TestModelDirErrors(t *testing.T) {
	root := copyTinyBase(t)
	d, err := config.OpenModelDir(root)
	if err != nil {
		t.Fatal(err)
	}

	_, err = config.OpenModelDir(filepath.Join(root, "unet"))
	wantErr(t, "folder without model_index.json", err, filepath.Join(root, "unet"), "no model_index.json")
	_, err = config.OpenModelDir(filepath.Join(root, "nope"))
	wantErr(t, "missing folder", err, filepath.Join(root, "nope"))
	_, err = config.OpenModelDir(filepath.Join(root, "unet", "config.json"))
	wantErr(t, "a file", err, "is not a folder")

	write(t, filepath.Join(root, "unet", "config.json"), `{"in_channels": 4,`)
	_, err = d.UNetConfig()
	wantErr(t, "bad unet JSON", err, filepath.Join(root, "unet", "config.json"), "not valid JSON")

	os.Remove(filepath.Join(root, "vae", "config.json"))
	_, err = d.VAEConfig()
	wantErr(t, "missing vae config", err, filepath.Join(root, "vae", "config.json"), "missing")

	write(t, filepath.Join(root, "text_encoder", "config.json"), `{"_class_name": "AutoencoderKL"}`)
	_, err = d.TextEncoderConfig("text_encoder_2")
	if err != nil {
		t.Errorf("text_encoder_2 should still read: %v", err)
	}
	write(t, filepath.Join(root, "text_encoder", "config.json"), `{"architectures": ["CLIPTextModelWithProjection"]}`)
	_, err = d.TextEncoderConfig("text_encoder")
	wantErr(t, "architectures vs model_index", err, filepath.Join(root, "text_encoder", "config.json"), "CLIPTextModelWithProjection", "CLIPTextModel")

	_, err = d.TextEncoderConfig("unet")
	wantErr(t, "wrong class", err, "model_index.json", `"unet" is a UNet2DConditionModel, want CLIPTextModel or CLIPTextModelWithProjection`)
	_, err = d.TextEncoderConfig("text_encoder_3")
	wantErr(t, "absent component", err, `no component "text_encoder_3"`)
	_, err = d.WeightFiles("tokenizer", "")
	wantErr(t, "null component", err, `sets "tokenizer" to [null, null]`)
	_, err = d.WeightFiles("../unet", "")
	wantErr(t, "path in component name", err, `"../unet" is not a component folder name`)
	_, err = d.WeightFiles("unet", "../fp16")
	wantErr(t, "path in variant", err, `bad variant "../fp16"`)

	// A folder with only pickle weights says so.
	os.Rename(filepath.Join(root, "unet", "diffusion_pytorch_model.safetensors"), filepath.Join(root, "unet", "diffusion_pytorch_model.bin"))
	os.Remove(filepath.Join(root, "unet", "diffusion_pytorch_model.fp16.safetensors"))
	_, err = d.WeightFiles("unet", "")
	wantErr(t, "pickle only", err, filepath.Join(root, "unet"), "no diffusion_pytorch_model.safetensors", "pickle (.bin/.ckpt) weights are not read")

	// A default-only load where only the fp16 variant file exists.
	_, err = d.WeightFiles("text_encoder", "")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(root, "text_encoder", "model.safetensors"))
	_, err = d.WeightFiles("text_encoder", "")
	wantErr(t, "only the variant present", err, "no model.safetensors for the default weights", "it has model.fp16.safetensors")

	// A corrupt weight file is reported by the safetensors reader.
	write(t, filepath.Join(root, "text_encoder_2", "model.safetensors"), "garbage!")
	_, err = d.OpenWeights("text_encoder_2", "")
	wantErr(t, "corrupt weights", err, filepath.Join(root, "text_encoder_2", "model.safetensors"))

	os.Remove(filepath.Join(root, "scheduler", "scheduler_config.json"))
	_, err = d.SchedulerConfigPath()
	wantErr(t, "missing scheduler config", err, filepath.Join(root, "scheduler", "scheduler_config.json"))

	write(t, filepath.Join(root, "model_index.json"), `{"_class_name": "StableDiffusionXLPipeline", "unet": "UNet2DConditionModel"}`)
	if d2, err := config.OpenModelDir(root); err != nil || len(d2.ModelIndex.Components) != 0 {
		t.Errorf("model_index with a non-list entry: %v", err)
	}
	write(t, filepath.Join(root, "model_index.json"), `{"_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers"]}`)
	_, err = config.OpenModelDir(root)
	wantErr(t, "bad model_index", err, filepath.Join(root, "model_index.json"), "unet: want [library, class]")
}

// shardUNet splits the tiny base UNet file into two shards (first and
// second half of the sorted names) beside an index named indexName, and
// removes the single file; the shards keep the stored dtype and bytes.
func shardUNet(t *testing.T, root, single, indexName string, shardNames [2]string) map[string]string {
	t.Helper()
	dir := filepath.Join(root, "unet")
	f, err := safetensors.Open(filepath.Join(dir, single))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := f.Names()
	weightMap := map[string]string{}
	for s, part := range [][]string{names[:len(names)/2], names[len(names)/2:]} {
		var ts []safetensors.RawTensor
		for _, n := range part {
			in, _ := f.Info(n)
			raw, err := f.Raw(n, nil)
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, safetensors.RawTensor{Name: n, DType: in.DType, Shape: in.Shape, Data: raw})
			weightMap[n] = shardNames[s]
		}
		if err := safetensors.WriteRawFile(filepath.Join(dir, shardNames[s]), ts, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
	}
	idx, _ := json.MarshalIndent(map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": weightMap}, "", "  ")
	write(t, filepath.Join(dir, indexName), string(idx))
	if err := os.Rename(filepath.Join(dir, single), filepath.Join(dir, single+".orig")); err != nil {
		t.Fatal(err)
	}
	return weightMap
}

// TestShardedWeights: a sharded component resolves through its index (the
// modern and the legacy variant names), reads bit-identically to the
// single file, and every inconsistency is an error naming the index.
func TestShardedWeights(t *testing.T) {
	root := copyTinyBase(t)
	unetDir := filepath.Join(root, "unet")
	shards := [2]string{"diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model-00002-of-00002.safetensors"}
	weightMap := shardUNet(t, root, "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json", shards)
	// The fp16 variant with diffusers' pre-0.28 index name.
	shards16 := [2]string{"diffusion_pytorch_model.fp16-00001-of-00002.safetensors", "diffusion_pytorch_model.fp16-00002-of-00002.safetensors"}
	shardUNet(t, root, "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors.fp16.index.json", shards16)

	d, err := config.OpenModelDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		variant string
		shards  [2]string
		orig    string
	}{{"", shards, "diffusion_pytorch_model.safetensors.orig"}, {"fp16", shards16, "diffusion_pytorch_model.fp16.safetensors.orig"}} {
		files, err := d.WeightFiles("unet", c.variant)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 2 || filepath.Base(files[0]) != c.shards[0] || filepath.Base(files[1]) != c.shards[1] {
			t.Fatalf("variant %q: files %v", c.variant, files)
		}
		ws, err := d.OpenWeights("unet", c.variant)
		if err != nil {
			t.Fatal(err)
		}
		orig, err := safetensors.Open(filepath.Join(unetDir, c.orig))
		if err != nil {
			t.Fatal(err)
		}
		if ws.Len() != len(orig.Tensors) {
			t.Errorf("variant %q: %d tensors across shards, %d in the single file", c.variant, ws.Len(), len(orig.Tensors))
		}
		// Read concurrently to exercise the shared scratch buffers.
		var wg sync.WaitGroup
		errs := make(chan string, len(orig.Tensors))
		for _, n := range orig.Names() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				want, _, err := orig.Float32(n)
				if err != nil {
					errs <- err.Error()
					return
				}
				got := make([]float32, len(want))
				if err := ws.ReadFloat32(n, got); err != nil {
					errs <- err.Error()
					return
				}
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						errs <- n + " differs"
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		f, _ := ws.File("conv_in.weight")
		t.Logf("variant %q: %d tensors over %d shards read bit-identically to the single file (conv_in.weight in %s)", c.variant, ws.Len(), len(files), filepath.Base(f.Path()))
		_, err = ws.Raw("no.such.weight", nil)
		wantErr(t, "missing tensor across shards", err, `no tensor "no.such.weight" in the 2 shards`)
		orig.Close()
		ws.Close()
	}

	// The modern variant index name wins over the legacy one.
	idx16 := filepath.Join(unetDir, "diffusion_pytorch_model.safetensors.index.fp16.json")
	write(t, idx16, `{"weight_map": {"conv_in.weight": "diffusion_pytorch_model.fp16-00001-of-00002.safetensors"}}`)
	if files, err := d.WeightFiles("unet", "fp16"); err != nil || len(files) != 1 {
		t.Errorf("modern fp16 index: %v %v", files, err)
	}
	os.Remove(idx16)

	index := filepath.Join(unetDir, "diffusion_pytorch_model.safetensors.index.json")
	good, _ := os.ReadFile(index)
	setIndex := func(edit func(m map[string]string)) {
		m := map[string]string{}
		for k, v := range weightMap {
			m[k] = v
		}
		edit(m)
		b, _ := json.Marshal(map[string]any{"weight_map": m})
		write(t, index, string(b))
	}
	setIndex(func(m map[string]string) { m["conv_in.weight"] = shards[1] })
	_, err = d.OpenWeights("unet", "")
	wantErr(t, "tensor in the wrong shard", err, index, `tensor "conv_in.weight" should be in `+shards[1]+" but is in "+shards[0])
	setIndex(func(m map[string]string) { m["extra.weight"] = shards[0] })
	_, err = d.OpenWeights("unet", "")
	wantErr(t, "tensor missing from its shard", err, index, `tensor "extra.weight" should be in `+shards[0])
	setIndex(func(m map[string]string) { m["conv_in.weight"] = "diffusion_pytorch_model-00003-of-00002.safetensors" })
	_, err = d.WeightFiles("unet", "")
	wantErr(t, "missing shard", err, index, "lists shard diffusion_pytorch_model-00003-of-00002.safetensors, which is missing")
	setIndex(func(m map[string]string) { m["conv_in.weight"] = "../vae/diffusion_pytorch_model.safetensors" })
	_, err = d.WeightFiles("unet", "")
	wantErr(t, "shard outside the folder", err, index, `maps to "../vae/diffusion_pytorch_model.safetensors"`)
	write(t, index, `{"weight_map": {}}`)
	_, err = d.WeightFiles("unet", "")
	wantErr(t, "empty index", err, index, "weight_map is missing or empty")
	write(t, index, `{"weight_map": [}`)
	_, err = d.WeightFiles("unet", "")
	wantErr(t, "bad index JSON", err, index, "not a valid shard index")
	write(t, index, string(good))

	// A tensor stored in two shards is ambiguous.
	dup := filepath.Join(unetDir, "dup.safetensors")
	if err := safetensors.WriteFile(dup, []safetensors.Tensor{{Name: "conv_in.bias", Shape: []int{1}, Data: []float32{1}}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = config.OpenWeightFiles(filepath.Join(unetDir, shards[0]), filepath.Join(unetDir, shards[1]), dup)
	wantErr(t, "duplicate across shards", err, `tensor "conv_in.bias" is in both`, dup)
	_, err = config.OpenWeightFiles()
	wantErr(t, "no files", err, "no weight files")
}

// TestOpenWeightsIn reads a lone component folder (a standalone VAE, as
// --vae would give) without a pipeline around it.
func TestOpenWeightsIn(t *testing.T) {
	dir := golden.Path(t, "small/models/sdxl-small-base/vae")
	ws, err := config.OpenWeightsIn(dir, "diffusion_pytorch_model", "")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	cfg, err := config.ReadVAEConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := vae.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(nn.Params(v, "")); ws.Len() != want {
		t.Errorf("%d tensors, config gives %d", ws.Len(), want)
	}
	if dt, ok := ws.DType("decoder.conv_out.weight"); !ok || dt != safetensors.F16 {
		t.Errorf("dtype %s %v", dt, ok)
	}
	if sh, ok := ws.Shape("decoder.conv_out.weight"); !ok || len(sh) != 4 || sh[0] != 3 {
		t.Errorf("shape %v %v", sh, ok)
	}
	if _, err := config.WeightFilesIn(dir, "diffusion_pytorch_model", "fp16"); err == nil {
		t.Error("fp16 variant found in a folder without one")
	}
}

// WeightSet plugs into the layer loader directly.
var _ nn.Source = (*config.WeightSet)(nil)
