package redisstreams_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/redisstreams"
)

// BenchmarkReplicaAcks measures what WithReplicaAcks(1, 1s) costs a
// publisher, as BENCHMARKS.md reports it: Publish of 1 KiB payloads to a
// master with one replica (two redis-server processes from redistest,
// without persistence, on loopback; the second made a replica with
// REPLICAOF), without WAIT and with one WAIT per pipeline, from one goroutine
// (publish-1) and from 16 (publish-16, where the publisher coalesces
// concurrent calls into pipelines). Compare the two side by side:
//
//	go test -run '^$' -bench BenchmarkReplicaAcks -count 5 ./redisstreams
func BenchmarkReplicaAcks(b *testing.B) {
	redistest.RequireControl(b)
	master := redistest.Start(b)
	replica := redistest.Start(b)
	host, port, err := net.SplitHostPort(master.Addr())
	if err != nil {
		b.Fatal(err)
	}
	rr := redis.NewClient(redistest.Options(replica.Addr()))
	b.Cleanup(func() { rr.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rr.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		b.Fatal(err)
	}
	for {
		info, err := rr.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			break
		}
		if ctx.Err() != nil {
			b.Fatalf("the replica's link to its master is not up after 30 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	payload := bytes.Repeat([]byte("x"), 1024)
	for _, wait := range []int{0, 1} {
		for _, publishers := range []int{1, 16} {
			name := fmt.Sprintf("wait=%d/publish-%d", wait, publishers)
			b.Run(name, func(b *testing.B) {
				rc := redis.NewClient(redistest.Options(master.Addr()))
				b.Cleanup(func() { rc.Close() })
				var opts []redisstreams.Option
				if wait > 0 {
					opts = append(opts, redisstreams.WithReplicaAcks(wait, time.Second))
				}
				br, err := redisstreams.NewBroker(rc, opts...)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { br.Close() })
				topic := fmt.Sprintf("%sbench.wait%d.p%d", master.KeyPrefix(), wait, publishers)
				b.Cleanup(func() { rc.Del(context.Background(), topic) })
				bench(b, publishers, func() error { return br.Publish(context.Background(), topic, payload) })
			})
		}
	}
}

// bench calls publish b.N times from publishers goroutines and reports
// messages/s.
func bench(b *testing.B, publishers int, publish func() error) {
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	if publishers == 1 {
		for range b.N {
			if err := publish(); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		// RunParallel starts GOMAXPROCS × parallelism goroutines.
		b.SetParallelism((publishers + testingProcs() - 1) / testingProcs())
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := publish(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }
