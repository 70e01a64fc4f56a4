package lora_test

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/x448/float16"

	"github.com/sdxl-go/sdxl/backend/cpu"
	"github.com/sdxl-go/sdxl/nn"
	"github.com/sdxl-go/sdxl/safetensors"
	"github.com/sdxl-go/sdxl/sdxl/config"
	"github.com/sdxl-go/sdxl/sdxl/lora"
	"github.com/sdxl-go/sdxl/sdxl/unet"
	"github.com/sdxl-go/sdxl/tensor"
)

// BenchmarkApplyRemoveRank32 applies and removes a rank-32 LoRA (fp16, as
// LoRAs are shipped) on every attention projection (to_q, to_k, to_v,
// to_out.0 of attn1 and attn2) and feed-forward layer (ff.net.0.proj,
// ff.net.2) of the full-size SDXL base UNet: 700 weights, 2.18e9 of its
// 2.57e9 parameters, random weights from the real config, on the CPU
// backend in float32. One op is one Set (merge) plus one Clear (restore);
// apply-s and remove-s split it. The UNet and its merged copies hold about
// 19 GB: run it alone, under the heavy lock:
//
//	flock /tmp/sdxl-heavy.lock go test ./sdxl/lora -run '^$' -bench ApplyRemoveRank32 -benchtime 4x
//
// (The text encoders and VAE of sdxl.RandomModel are left out: they would
// add 3.6 GB and no LoRA layer here.)
func BenchmarkApplyRemoveRank32(bm *testing.B) {
	be := cpu.New()
	u, err := unet.New(config.SDXLBaseUNet())
	if err != nil {
		bm.Fatal(err)
	}
	params := nn.CountParams(u)
	start := time.Now()
	nn.InitRandom(be, u, tensor.F32, 1)
	bm.Logf("random UNet (%d parameters) in %v", params, time.Since(start).Round(time.Millisecond))
	f, touched := rank32File(bm, u, 32)
	if os.Getenv("GOMEMLIMIT") == "" {
		// Live: the weights and, while applied, the merged copies; without a
		// limit the collector would let removed copies pile up.
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(4*(params+touched) + 2<<30))
	}
	ap, err := lora.NewApplier(lora.Target{UNet: u})
	if err != nil {
		bm.Fatal(err)
	}
	uses := []lora.Use{lora.Scaled(f, 0.8)}
	var apply, remove time.Duration
	bm.ResetTimer()
	for i := range bm.N {
		t0 := time.Now()
		if err := ap.Set(context.Background(), uses); err != nil {
			bm.Fatal(err)
		}
		t1 := time.Now()
		ap.Clear()
		t2 := time.Now()
		apply += t1.Sub(t0)
		remove += t2.Sub(t1)
		bm.Logf("op %d: apply %v (%d weights), remove %v", i+1, t1.Sub(t0).Round(time.Millisecond), len(f.Layers), t2.Sub(t1).Round(time.Microsecond))
	}
	bm.ReportMetric(apply.Seconds()/float64(bm.N), "apply-s")
	bm.ReportMetric(remove.Seconds()/float64(bm.N), "remove-s")
}

// rank32File writes a kohya LoRA of the given rank on every attention and
// feed-forward weight of u and loads it; it returns the file and the
// number of parameters it changes.
func rank32File(bm *testing.B, u *unet.UNet, rank int) (*lora.File, int64) {
	r := rand.New(rand.NewPCG(5, 6))
	f16 := func(n int, std float64) []byte {
		out := make([]byte, 2*n)
		for i := range n {
			binary.LittleEndian.PutUint16(out[2*i:], float16.Fromfloat32(float32(r.NormFloat64()*std)).Bits())
		}
		return out
	}
	alpha := binary.LittleEndian.AppendUint16(nil, float16.Fromfloat32(16).Bits())
	var ts []safetensors.RawTensor
	var touched int64
	for _, p := range nn.Params(u, "") {
		n := p.Name
		if !strings.Contains(n, ".transformer_blocks.") || p.Tensor().Rank() != 2 ||
			!(strings.Contains(n, ".attn1.") || strings.Contains(n, ".attn2.") || strings.Contains(n, ".ff.")) {
			continue
		}
		out, in := p.Tensor().Dim(0), p.Tensor().Dim(1)
		touched += int64(out * in)
		k := "lora_unet_" + strings.ReplaceAll(strings.TrimSuffix(n, ".weight"), ".", "_")
		ts = append(ts,
			safetensors.RawTensor{Name: k + ".lora_down.weight", DType: safetensors.F16, Shape: []int{rank, in}, Data: f16(rank*in, 0.02)},
			safetensors.RawTensor{Name: k + ".lora_up.weight", DType: safetensors.F16, Shape: []int{out, rank}, Data: f16(out*rank, 0.02)},
			safetensors.RawTensor{Name: k + ".alpha", DType: safetensors.F16, Shape: []int{}, Data: alpha})
	}
	path := filepath.Join(bm.TempDir(), "rank32.safetensors")
	if err := safetensors.WriteRawFile(path, ts, nil); err != nil {
		bm.Fatal(err)
	}
	f, err := lora.Load(path)
	if err != nil {
		bm.Fatal(err)
	}
	return f, touched
}
