package testkit

import (
	"context"
	"encoding/binary"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// LatencyInterval is the pause between two messages of [Latency]: 1000
// messages a second, a rate at which no message waits for another, so that
// what is measured is the path of one message.
const LatencyInterval = time.Millisecond

// Latency measures publish → handler of b.N messages published one every
// [LatencyInterval] from one goroutine, and reports the median and the 99th
// percentile as the metrics p50-µs and p99-µs (ns/op is then mostly the
// interval). consume starts the consumer, which calls handle with each
// payload; publish sends one payload of size bytes (at least 8: the first 8
// carry the send time) and returns once it is stored. A message that does
// not arrive within a minute of the last publish fails b.
func Latency(b *testing.B, size int, consume func(handle func([]byte)) error, publish func(ctx context.Context, p []byte) error) {
	b.Helper()
	if size < 8 {
		b.Fatalf("testkit: Latency needs payloads of 8 bytes or more, not %d", size)
	}
	base := time.Now()
	lat := make([]time.Duration, b.N)
	var handled atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	err := consume(func(p []byte) {
		d := time.Since(base) - time.Duration(binary.LittleEndian.Uint64(p))
		i := handled.Add(1)
		if i <= n {
			lat[i-1] = d
		}
		if i == n {
			close(done)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tick := time.NewTicker(LatencyInterval)
	defer tick.Stop()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p := make([]byte, size)
		binary.LittleEndian.PutUint64(p, uint64(time.Since(base)))
		if err := publish(ctx, p); err != nil {
			b.Fatal(err)
		}
		<-tick.C
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("handled %d of %d", handled.Load(), n)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(percentile(lat, 0.50))/1e3, "p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99))/1e3, "p99-µs")
}

// percentile of sorted values, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
