package benchmarks

import (
	"context"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Telemetry is the OpenTelemetry SDK of the end-to-end+otel case: every span
// sampled and batched to an exporter that drops them, metrics aggregated by
// the SDK and read by nobody, so the case measures what relay's
// instrumentation costs with an SDK installed, not an exporter's I/O.
type Telemetry struct {
	Tracer *sdktrace.TracerProvider
	Meter  *sdkmetric.MeterProvider
}

func newTelemetry() *Telemetry {
	return &Telemetry{
		Tracer: sdktrace.NewTracerProvider(
			sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithBatcher(tracetest.NewNoopExporter()),
		),
		Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
	}
}

func (t *Telemetry) shutdown() {
	_ = t.Tracer.Shutdown(context.Background())
	_ = t.Meter.Shutdown(context.Background())
}
