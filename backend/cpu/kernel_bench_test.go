package cpu

import (
	"testing"
)

// BenchmarkKernel measures each micro-kernel of this machine alone on
// L1-resident panels (the ceiling for every GEMM-based op on one thread)
// and reports it as a fraction of the measured FMA peak of its register
// width (BenchmarkFMAPeak).
func BenchmarkKernel(b *testing.B) {
	for _, k := range Kernels() {
		mk := NewWithOptions(Options{Kernel: k}).mk
		b.Run(string(k), func(b *testing.B) {
			const kc = gemmKC
			panels := mk.panelStep()
			a := make([]float32, kc*mk.mr)
			bp := make([]float32, panels*kc*gemmNR)
			c := make([]float32, mk.mr*panels*gemmNR)
			for i := range a {
				a[i] = 1e-3
			}
			for i := range bp {
				bp[i] = 1e-3
			}
			b.ResetTimer()
			for range b.N {
				mk.call(panels == 2, kc, &a[0], &bp[0], &c[0], panels*gemmNR, kc*gemmNR, true)
			}
			gf := 2 * float64(mk.mr*panels*gemmNR*kc) * float64(b.N) / b.Elapsed().Seconds() / 1e9
			b.ReportMetric(gf, "GFLOP/s")
			if peak := fmaPeak(mk.isa); peak > 0 {
				b.ReportMetric(gf/peak, "of-peak")
			}
		})
	}
}

// BenchmarkFMAPeak measures one core's fused multiply-add throughput with
// ymm (AVX2) and zmm (AVX-512) registers.
func BenchmarkFMAPeak(b *testing.B) {
	for _, v := range []isa{isaAVX2, isaAVX512} {
		if fmaPeak(v) == 0 {
			continue
		}
		b.Run(v.String(), func(b *testing.B) {
			b.ReportMetric(fmaPeak(v), "GFLOP/s")
		})
	}
}

// BenchmarkPackBTrans is the weight packing of a 1280x1280 Linear layer.
func BenchmarkPackBTrans(b *testing.B) {
	be := New()
	w := make([]float32, 1280*1280)
	dst := make([]float32, packedBSize(1280, 1280))
	for range b.N {
		be.packB(1, dst, true, 1280, 1280, w, 1280)
	}
	b.ReportMetric(float64(len(w))*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
}
