package server

import (
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/jobs"
)

// loadResult sums up a load run.
type loadResult struct {
	ok, full, other int
	latencies       []time.Duration
	elapsed         time.Duration
	errs            []string
}

func (r loadResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), r.latencies...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// load runs clients × requests A1111 txt2img calls (64x64, 4 steps, the
// bundled model) on loopback; each answer must be 200 with an image or
// 429 (the queue is full).
func load(t testing.TB, ts *testServer, clients, requests int) loadResult {
	var mu sync.Mutex
	var res loadResult
	var wg sync.WaitGroup
	start := time.Now()
	body := `{"prompt": "a load test", "width": 64, "height": 64, "steps": 4}`
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Minute}
			for i := 0; i < requests; i++ {
				t0 := time.Now()
				r, err := client.Post(ts.URL+"/sdapi/v1/txt2img", "application/json", strings.NewReader(body))
				d := time.Since(t0)
				mu.Lock()
				switch {
				case err != nil:
					res.other++
					res.errs = append(res.errs, err.Error())
				case r.StatusCode == http.StatusOK:
					res.ok++
					res.latencies = append(res.latencies, d)
				case r.StatusCode == http.StatusTooManyRequests && r.Header.Get("Retry-After") != "":
					res.full++
				default:
					res.other++
					res.errs = append(res.errs, r.Status)
				}
				mu.Unlock()
				if r != nil {
					r.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// goroutinesSettle waits for the goroutine count to come back near n.
func goroutinesSettle(n int) int {
	var now int
	for i := 0; i < 100; i++ {
		if now = runtime.NumGoroutine(); now <= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return now
}

// TestLoadShort is the bounded load check of every test run: 8 clients ×
// 3 requests with a queue of 4: only 200s and 429s, no goroutine left
// behind, the heap back where it was. BenchmarkServeLoad is the full
// 8 × 25 with the figures.
func TestLoadShort(t *testing.T) {
	ts := newTestServer(t, jobs.Config{MaxQueue: 4}, nil)
	load(t, ts, 1, 1) // warm up
	ts.Client().CloseIdleConnections()
	before := runtime.NumGoroutine()
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	res := load(t, ts, 8, 3)
	http.DefaultClient.CloseIdleConnections()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	after := goroutinesSettle(before + 2)
	t.Logf("%d ok, %d refused (429) in %v; p50 %v, p99 %v; heap %d → %d MB; goroutines %d → %d",
		res.ok, res.full, res.elapsed.Round(time.Millisecond), res.percentile(0.5).Round(time.Millisecond),
		res.percentile(0.99).Round(time.Millisecond), m0.HeapAlloc>>20, m1.HeapAlloc>>20, before, after)
	if res.other != 0 || res.ok == 0 || res.ok+res.full != 24 {
		t.Errorf("answers: %d ok, %d full, %d other %v", res.ok, res.full, res.other, res.errs)
	}
	if after > before+2 {
		t.Errorf("goroutines: %d before, %d after", before, after)
	}
	if m1.HeapAlloc > m0.HeapAlloc+64<<20 {
		t.Errorf("heap grew from %d to %d MB", m0.HeapAlloc>>20, m1.HeapAlloc>>20)
	}
}

// BenchmarkServeLoad: 8 clients × 25 requests (64x64, 4 steps, bundled
// model, one CPU worker, a queue of 4: the other clients are refused with
// 429) per iteration; reports the
// throughput of answered images, the latency percentiles of the answered
// requests, the refusals and the heap after the run.
func BenchmarkServeLoad(b *testing.B) {
	ts := newTestServer(b, jobs.Config{MaxQueue: 4}, nil)
	load(b, ts, 1, 2) // warm up
	before := runtime.NumGoroutine()
	var total loadResult
	for b.Loop() {
		r := load(b, ts, 8, 25)
		total.ok, total.full, total.other = total.ok+r.ok, total.full+r.full, total.other+r.other
		total.latencies, total.elapsed = append(total.latencies, r.latencies...), total.elapsed+r.elapsed
		total.errs = append(total.errs, r.errs...)
	}
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	if total.other != 0 {
		b.Fatalf("%d failed requests: %v", total.other, total.errs)
	}
	b.ReportMetric(float64(total.ok)/total.elapsed.Seconds(), "images/s")
	b.ReportMetric(float64(total.percentile(0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(total.percentile(0.99).Milliseconds()), "p99-ms")
	b.ReportMetric(float64(total.full)/float64(b.N), "429s/op")
	b.ReportMetric(float64(m.HeapAlloc>>20), "heap-MB")
	ts.Client().CloseIdleConnections()
	if after := goroutinesSettle(before + 2); after > before+2 {
		b.Errorf("goroutines: %d before, %d after", before, after)
	}
}
