package cpu

import "testing"

// BenchmarkKernel measures the micro-kernel alone on L1-resident panels:
// the ceiling for every GEMM-based op on one thread.
func BenchmarkKernel(b *testing.B) {
	const k = gemmKC
	a := make([]float32, k*gemmMR)
	bp := make([]float32, k*gemmNR)
	c := make([]float32, gemmMR*gemmNR)
	for i := range a {
		a[i] = 1e-3
	}
	for i := range bp {
		bp[i] = 1e-3
	}
	b.ResetTimer()
	for range b.N {
		kernel(k, &a[0], &bp[0], &c[0], gemmNR, true)
	}
	b.ReportMetric(2*gemmMR*gemmNR*k*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
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
