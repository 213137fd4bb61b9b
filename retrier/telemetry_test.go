package retrier

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/go-relay/relay"
)

func TestTelemetryRecordsEachAttempt(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	tests := []struct {
		name     string
		topic    string
		failures int
		want     map[string]int64
	}{
		{"fails twice, then succeeds", "orders-flaky", 2, map[string]int64{"retried": 2, "acked": 1}},
		{"fails every attempt", "orders-poison", 100, map[string]int64{"retried": 2, "dead_lettered": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec.Reset()
			topic := tt.topic
			b := newRetrier(t, newSyncBroker(), WithMaxDeliver(3), WithTracerProvider(tp), WithMeterProvider(mp))
			calls := 0
			subscribe(t, b, topic, func([]byte) error {
				if calls++; calls <= tt.failures {
					return errors.New("boom")
				}
				return nil
			})
			publish(t, b, topic, []byte("x"))
			var attempts []int64
			for _, s := range rec.Ended() {
				for _, kv := range s.Attributes() {
					if kv.Key == "relay.delivery.attempt" {
						attempts = append(attempts, kv.Value.AsInt64())
					}
				}
			}
			if len(attempts) != 3 || attempts[0] != 1 || attempts[2] != 3 {
				t.Fatalf("process spans' attempts %v, want [1 2 3]", attempts)
			}
			var rm metricdata.ResourceMetrics
			if err := reader.Collect(context.Background(), &rm); err != nil {
				t.Fatal(err)
			}
			got := outcomes(rm, topic)
			for o, n := range tt.want {
				if got[o] != n {
					t.Errorf("outcome %s = %d, want %d (all: %v)", o, got[o], n, got)
				}
			}
		})
	}
}

func outcomes(rm metricdata.ResourceMetrics, topic string) map[string]int64 {
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if m.Name != "relay.delivery.outcomes" || !ok {
				continue
			}
			for _, p := range sum.DataPoints {
				if v, _ := p.Attributes.Value("messaging.destination.name"); v.AsString() != topic {
					continue
				}
				o, _ := p.Attributes.Value(attribute.Key("relay.delivery.outcome"))
				got[o.AsString()] += p.Value
			}
		}
	}
	return got
}

func TestTelemetryOptionsRefuseNil(t *testing.T) {
	for _, tt := range []struct {
		name string
		opt  Option
	}{
		{"tracer provider", WithTracerProvider(nil)},
		{"meter provider", WithMeterProvider(nil)},
		{"propagators", WithPropagators(nil)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(newSyncBroker(), tt.opt); !errors.Is(err, relay.ErrInvalidOption) {
				t.Fatalf("New(nil %s) = %v, want ErrInvalidOption", tt.name, err)
			}
		})
	}
}
