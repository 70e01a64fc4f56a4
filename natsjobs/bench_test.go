package natsjobs

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkWorkers measures the throughput (jobs/s) of 1 and 3 workers on
// the bundled model: 64x64, 2 steps a job, through an in-process server.
// The workers share one engine, which runs one job at a time, so on a
// small CPU this measures the queue's overhead more than any scaling;
// "local" is the same jobs on a Runner without NATS, for comparison.
func BenchmarkWorkers(b *testing.B) {
	b.Run("local", func(b *testing.B) {
		c := newCluster(b)
		c.reference(spec(1))
		b.ResetTimer()
		start := time.Now()
		for i := range b.N {
			c.reference(spec(int64(i)))
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
	})
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			c := newCluster(b)
			for range n {
				c.start(testConfig(func(string, ...any) {}), nil)
			}
			c.submit("warmup", spec(1))
			c.wait([]string{"warmup"}, time.Minute)
			ids := make([]string, b.N)
			for i := range ids {
				ids[i] = fmt.Sprintf("bench%d", i)
			}
			b.ResetTimer()
			start := time.Now()
			for i, id := range ids {
				c.submit(id, spec(int64(i)))
			}
			c.wait(ids, 10*time.Minute)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
		})
	}
}
