package telemetry

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// The tests here never install global providers: the off case is the otel
// package's placeholders, as in a program without an SDK.

func TestOffCostsNoAllocation(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"global placeholders", Config{}},
		{"noop providers", Config{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tel := New("memory", tt.cfg, nil)
			sub := tel.Subscription("orders", "g")
			md := map[string]string{"k": "v"}
			ctx := context.Background()
			allocs := testing.AllocsPerRun(100, func() {
				p, _ := tel.StartPublish(ctx, "orders", "id", nil)
				p.End(nil)
				a := sub.Start(ctx, "id", 1, md)
				sub.Hold(1)
				_ = a.Context(ctx)
				a.Settled(Retried, errors.New("x"), 0, "")
				sub.Hold(-1)
			})
			// errors.New is the one allocation of the loop.
			if allocs > 1 {
				t.Fatalf("%v allocations per message with telemetry off, want none of relay's", allocs-1)
			}
		})
	}
}

func TestPlaceholderIsRecognised(t *testing.T) {
	tel := New("memory", Config{}, nil)
	if !tel.tpGlobal || !tel.mpGlobal {
		t.Fatalf("the global providers %T and %T were not recognised as the otel placeholders", tel.tp, tel.mp)
	}
	if tel.tracing() || tel.metering() {
		t.Fatal("tracing or metering on with no SDK installed")
	}
	sdk := New("memory", Config{TracerProvider: sdktrace.NewTracerProvider(), MeterProvider: sdkmetric.NewMeterProvider()}, nil)
	if sdk.tpGlobal || sdk.mpGlobal || !sdk.tracing() || !sdk.metering() {
		t.Fatal("an SDK provider taken for the placeholder")
	}
}

func TestInjectExtractRoundTrip(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tel := New("memory", Config{TracerProvider: tp, Propagators: propagation.TraceContext{}}, nil)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "parent")
	p, md := tel.StartPublish(ctx, "orders", "id-1", nil)
	p.End(nil)
	parent.End()
	if md["traceparent"] == "" {
		t.Fatalf("no traceparent injected: %v", md)
	}
	a := tel.Subscription("orders", "g").Start(context.Background(), "id-1", 1, md)
	hctx := a.Context(context.Background())
	a.Settled(Acked, nil, 0, "")
	if got := trace.SpanContextFromContext(hctx).TraceID(); got != parent.SpanContext().TraceID() {
		t.Fatalf("handler context in trace %s, want %s", got, parent.SpanContext().TraceID())
	}
	for _, tt := range []struct {
		name string
		md   map[string]string
	}{
		{"no metadata", nil},
		{"malformed traceparent", map[string]string{"traceparent": "00-zz-zz-01"}},
		{"wrong version and length", map[string]string{"traceparent": "ff-" + md["traceparent"][3:]}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec.Reset()
			a := tel.Subscription("orders", "g").Start(context.Background(), "id-2", 1, tt.md)
			a.Settled(Acked, nil, 0, "")
			ended := rec.Ended()
			if len(ended) != 1 || ended[0].Parent().IsValid() {
				t.Fatalf("want one root span, got %d spans (parent valid: %v)", len(ended), len(ended) == 1 && ended[0].Parent().IsValid())
			}
		})
	}
}

func TestSettledTwiceRecordsOnce(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tel := New("memory", Config{TracerProvider: tp}, nil)
	a := tel.Subscription("orders", "g").Start(context.Background(), "id", 1, nil)
	a.Settled(Acked, nil, 0, "")
	a.Settled(Retried, errors.New("late"), 0, "")
	if n := len(rec.Ended()); n != 1 {
		t.Fatalf("%d spans ended, want 1", n)
	}
}

// laterSDKRan is set by the first run of TestLaterSDKIsUsed: the otel
// placeholder hands over to the first provider installed, once per process.
var laterSDKRan bool

func TestLaterSDKIsUsed(t *testing.T) {
	if laterSDKRan {
		t.Skip("the otel placeholder delegates once per process; the first run checked it")
	}
	laterSDKRan = true
	// Not parallel: it installs a global provider, and puts the placeholder
	// back for the tests that run after it (-count).
	tel := New("memory", Config{}, nil)
	placeholder := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(placeholder) })
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	p, _ := tel.StartPublish(context.Background(), "orders", "id", nil)
	p.End(nil)
	if n := len(rec.Ended()); n != 1 {
		t.Fatalf("%d spans after the SDK was installed, want 1: the placeholder must forward to it", n)
	}
}

func TestPublishContinuesTheTraceInMetadata(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tel := New("memory", Config{TracerProvider: tp, Propagators: propagation.TraceContext{}}, nil)
	_, upstream := tp.Tracer("test").Start(context.Background(), "upstream")
	upstream.End()
	md := map[string]string{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpan(context.Background(), upstream), propagation.MapCarrier(md))

	// A context without a span and metadata with a traceparent: a message
	// forwarded with its metadata.
	p, md := tel.StartPublish(context.Background(), "orders", "id", md)
	p.End(nil)
	var send sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "send orders" {
			send = s
		}
	}
	if send == nil || send.Parent().SpanID() != upstream.SpanContext().SpanID() {
		t.Fatalf("the producer span does not continue the metadata's trace (span %v)", send)
	}
	if sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier(md))); sc.SpanID() != send.SpanContext().SpanID() {
		t.Fatalf("the metadata carries span %s, want the producer span %s", sc.SpanID(), send.SpanContext().SpanID())
	}
}

// BenchmarkOffPerMessage is what relay adds to one message's way (a publish,
// one delivery attempt, its settling) while no SDK is installed.
func BenchmarkOffPerMessage(b *testing.B) {
	tel := New("memory", Config{}, nil)
	sub := tel.Subscription("orders", "g")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, md := tel.StartPublish(ctx, "orders", "id", nil)
		p.End(nil)
		a := sub.Start(ctx, "id", 1, md)
		sub.Hold(1)
		_ = a.Context(ctx)
		a.Settled(Acked, nil, 0, "")
		sub.Hold(-1)
	}
}
