package memory_test

import (
	"context"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/go-relay/relay/memory"
)

// discard is a span exporter that drops what it gets: the benchmark measures
// relay's and the SDK's cost, not an exporter's.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkPublishConsumeTelemetryOn is BenchmarkPublishConsume
// (publishers=1/concurrency=8) with OpenTelemetry on: an SDK tracer provider
// sampling every span into a batch span processor, an SDK meter provider
// with a reader, W3C trace context propagation, and each message published
// inside a span. Compare it with BenchmarkPublishConsume for the cost of
// telemetry when on; off it costs no allocation (internal/telemetry's
// TestOffCostsNoAllocation).
func BenchmarkPublishConsumeTelemetryOn(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discard{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	br := benchBroker(b, benchHub(b), memory.WithConcurrency(8), memory.WithTracerProvider(tp),
		memory.WithMeterProvider(mp), memory.WithPropagators(propagation.TraceContext{}))
	var handled atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	if err := br.Subscribe("bench", func([]byte) error {
		if handled.Add(1) == n {
			close(done)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	p := make([]byte, benchPayloadSize)
	ctx, span := tp.Tracer("bench").Start(context.Background(), "request")
	defer span.End()
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	b.ResetTimer()
	publishConcurrently(b, 1, func(context.Context) error {
		return br.Publish(ctx, "bench", p)
	})
	<-done
}
