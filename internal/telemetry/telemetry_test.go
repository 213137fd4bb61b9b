package telemetry

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
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
	all := tracing | metering | propagating
	if tel.on.Load() != all<<watched {
		t.Fatalf("the global providers %T, %T and %T were not all recognised as the otel placeholders", tel.tp, tel.mp, tel.prop)
	}
	if tel.recording(all) != 0 {
		t.Fatal("tracing, metering or propagating on with no SDK installed")
	}
	sdk := New("memory", Config{TracerProvider: sdktrace.NewTracerProvider(), MeterProvider: sdkmetric.NewMeterProvider(),
		Propagators: propagation.TraceContext{}}, nil)
	if sdk.on.Load() != all || sdk.recording(all) != all {
		t.Fatal("an SDK provider taken for the placeholder")
	}
}

func TestSamePointer(t *testing.T) {
	placeholder := otel.GetTracerProvider()
	sdk := sdktrace.NewTracerProvider()
	for _, tt := range []struct {
		name string
		a    trace.TracerProvider
		want bool
	}{
		{"the placeholder read again", otel.GetTracerProvider(), true},
		{"an SDK provider", sdk, false},
		{"a noop provider of struct type", tracenoop.NewTracerProvider(), false},
		{"nil", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := samePointer(tt.a, placeholder); got != tt.want || (tt.a == placeholder) != tt.want {
				t.Errorf("samePointer = %v, want %v as ==", got, tt.want)
			}
		})
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

// laterMeterRan is laterSDKRan for TestLaterMeterCountsWhatWasHeld.
var laterMeterRan bool

func TestLaterMeterCountsWhatWasHeld(t *testing.T) {
	if laterMeterRan {
		t.Skip("the otel placeholder delegates once per process; the first run checked it")
	}
	laterMeterRan = true
	// Not parallel: it installs a global provider, and puts the placeholder
	// back for the tests that run after it (-count).
	tel := New("memory", Config{}, nil)
	t.Cleanup(tel.Close)
	sub := tel.Subscription("orders", "g")
	sub.Hold(1) // fetched while no SDK is installed
	sub.Hold(1)
	placeholder := otel.GetMeterProvider()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		otel.SetMeterProvider(placeholder)
		_ = mp.Shutdown(context.Background())
	})
	otel.SetMeterProvider(mp)
	sub.Hold(-1) // one of them settled after the install
	a := sub.Start(context.Background(), "id", 1, nil)
	a.Settled(Acked, nil, 0, "")

	rm := collect(t, reader)
	if held, ok := sumValue(rm, MetricHeld); !ok || held != 1 {
		t.Errorf("%s = %d (reported: %v), want 1: two held before the install, one settled after", MetricHeld, held, ok)
	}
	if consumed, ok := sumValue(rm, "messaging.client.consumed.messages"); !ok || consumed != 1 {
		t.Errorf("consumed = %d (reported: %v), want the attempt started after the install", consumed, ok)
	}
}

func TestHeldIsCountedPerTopicAndGroup(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	tel := New("memory", Config{MeterProvider: mp}, nil)
	first, second := tel.Subscription("orders", "g"), tel.Subscription("orders", "g")
	if first != second {
		t.Fatal("two subscriptions of one group to one topic got two Topics: the gauge would report the group twice")
	}
	first.Hold(1)
	second.Hold(1)
	tel.Subscription("orders", "other").Hold(1)
	if held, _ := sumValue(collect(t, reader), MetricHeld, semconv.MessagingConsumerGroupName("g")); held != 2 {
		t.Errorf("held by group g = %d, want 2", held)
	}
	tel.Close()
	if _, ok := sumValue(collect(t, reader), MetricHeld); ok {
		t.Error("the held gauge is still reported after Close")
	}
}

func collect(t *testing.T, r sdkmetric.Reader) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect: %v", err)
	}
	return rm
}

// sumValue returns the point of the int64 sum name whose attributes include
// attrs, and whether there is one.
func sumValue(rm metricdata.ResourceMetrics, name string, attrs ...attribute.KeyValue) (int64, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if m.Name != name || !ok {
				continue
			}
			for _, p := range sum.DataPoints {
				if hasAll(p.Attributes, attrs) {
					return p.Value, true
				}
			}
		}
	}
	return 0, false
}

func hasAll(set attribute.Set, attrs []attribute.KeyValue) bool {
	for _, kv := range attrs {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
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
