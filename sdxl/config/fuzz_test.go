package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"testing"

	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/sched"
	"github.com/sdxl-go/sdxl/sdxl/clip"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/sdxl/vae"
)

// fuzzFile is one real config file the fuzzer mutates, and how to load it
// and build what a pipeline builds from it.
type fuzzFile struct {
	set, file string
	// extra keys the file lacks but the loader reads.
	extra []string
	load  func(data []byte) error
}

var fuzzFiles = []fuzzFile{
	{config.SDXLBaseName, "unet/config.json", []string{"reverse_transformer_layers_per_block", "num_attention_heads", "time_embedding_dim",
		"mid_block_only_cross_attention", "conv_in_kernel", "time_embedding_type", "resnet_out_scale_factor"}, loadUNet},
	{config.SDXLRefinerName, "unet/config.json", nil, loadUNet},
	{config.SDXLBaseName, "vae/config.json", []string{"latents_mean", "latents_std", "shift_factor"}, loadVAE},
	{config.SDXLBaseName, "text_encoder/config.json", []string{"text_config", "torch_dtype"}, loadTextEncoder},
	{config.SDXLBaseName, "text_encoder_2/config.json", nil, loadTextEncoder},
	{config.SDXLBaseName, "model_index.json", nil, func(data []byte) error {
		_, err := config.ParseModelIndex("model_index.json", data)
		return err
	}},
	{config.SDXLBaseName, "scheduler/scheduler_config.json", []string{"trained_betas", "sigma_min", "sigma_max", "rho", "eta"}, loadScheduler},
}

// loader parses a config and builds its meta model.
func loader[C, M any](parse func(string, []byte) (C, error), build func(C) (M, error)) func([]byte) error {
	return func(data []byte) error {
		c, err := parse("config.json", data)
		if err != nil {
			return err
		}
		m, err := build(c)
		if err == nil {
			nn.CountParams(m)
		}
		return err
	}
}

var (
	loadUNet        = loader(config.ParseUNetConfig, unet.New)
	loadVAE         = loader(config.ParseVAEConfig, vae.New)
	loadTextEncoder = loader(config.ParseTextEncoderConfig, clip.New)
)

func loadScheduler(data []byte) error {
	c, err := sched.ParseConfig(data)
	if err != nil {
		return err
	}
	s, err := sched.FromConfig(c)
	if err != nil {
		return err
	}
	return s.SetTimesteps(4)
}

// fuzzValue makes the kind-th sort of JSON value from n and s: integers
// that are negative, zero or huge, numbers, non-finite literals, strings,
// null, booleans, lists (flat, nested, mixed) and objects.
func fuzzValue(kind uint8, n int64, s string) any {
	switch kind % 16 {
	case 0:
		return n
	case 1:
		return -n
	case 2:
		return 0
	case 3:
		return int64(1) << (n & 63)
	case 4:
		return float64(n) / 7
	case 5:
		return []string{"NaN", "Infinity", "-Infinity"}[uint64(n)%3] // bare literals, see fuzzJSON
	case 6:
		return s
	case 7:
		return nil
	case 8:
		return n%2 == 0
	case 9:
		return []int64{n, n, n}
	case 10:
		return []int64{n, -1, n}
	case 11:
		return []any{[]int64{n, n}, n, []any{}}
	case 12:
		return []any{s, nil, true}
	case 13:
		return map[string]any{"hidden_size": n, s: n}
	case 14:
		return []int64{}
	default:
		return fmt.Sprint(n)
	}
}

// fuzzJSON is the real file with up to two keys set to fuzzed values.
func fuzzJSON(t *testing.T, f fuzzFile, keys [2]uint8, kinds [2]uint8, n int64, s string) []byte {
	data, err := config.RealConfigJSON(f.set, f.file)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	names := append([]string(nil), f.extra...)
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for i := range 2 {
		v := fuzzValue(kinds[i], n+int64(i), s)
		if lit, ok := v.(string); ok && kinds[i]%16 == 5 {
			v = "\x00" + lit // marked for the bare literal
		}
		m[names[int(keys[i])%len(names)]] = v
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, lit := range []string{"NaN", "Infinity", "-Infinity"} {
		out = bytes.ReplaceAll(out, []byte(`"\u0000`+lit+`"`), []byte(lit))
	}
	return out
}

// FuzzConfigFiles sets one or two keys of the real SDXL configs (UNet,
// refiner UNet, VAE, both text encoders, model_index, scheduler) to
// negative, zero, huge, non-finite and wrongly typed values, and also
// feeds the raw bytes to every loader. A loader returns an error or a
// config from which the meta model (or the scheduler's timesteps) builds
// without a panic; Validate's limits keep that cheap.
func FuzzConfigFiles(f *testing.F) {
	f.Add(uint8(0), uint8(0), uint8(1), uint8(0), uint8(7), int64(1), "x")
	f.Add(uint8(0), uint8(12), uint8(10), uint8(30), uint8(1), int64(2), "layers") // layers_per_block [2,-1,2]
	f.Add(uint8(3), uint8(14), uint8(3), uint8(0), uint8(7), int64(30), "")        // num_hidden_layers 2^30
	f.Add(uint8(6), uint8(1), uint8(4), uint8(2), uint8(5), int64(15), "NaN")      // betas
	f.Add(uint8(2), uint8(3), uint8(11), uint8(5), uint8(13), int64(-3), "{")
	f.Fuzz(func(t *testing.T, which, k1, kind1, k2, kind2 uint8, n int64, s string) {
		file := fuzzFiles[int(which)%len(fuzzFiles)]
		data := fuzzJSON(t, file, [2]uint8{k1, k2}, [2]uint8{kind1, kind2}, n, s)
		_ = file.load(data) // an error is fine; a panic fails the fuzz
		for _, ff := range fuzzFiles {
			_ = ff.load([]byte(s))
		}
	})
}
