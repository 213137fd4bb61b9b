package pubsubtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/go-relay/relay"
)

// TestTelemetry checks a backend's OpenTelemetry instrumentation with the
// SDK's in-memory recorders (a tracetest.SpanRecorder and a ManualReader):
// the trace context travels in the message from either face to the other, a
// process span per delivery attempt carries its delivery count, the
// delivery-outcome counter and the consumer lag gauge read what happened, and
// sent and consumed counters, the publish and process duration histograms and
// the held gauge count what was published and consumed, Close counts what it
// hands back, and a message without trace context, or with a malformed
// traceparent, starts a new trace and is delivered.
//
// It needs NewBroker, NewPublisher and NewSubscriber, and
// Capabilities.Telemetry; without that flag it skips, saying why. The names it
// expects are those of relay's backends: spans "send <topic>" (PRODUCER) and
// "process <topic>" (CONSUMER) with the attribute relay.delivery.attempt,
// the counter relay.delivery.outcomes{relay.delivery.outcome}, the gauges
// relay.consumer.lag and relay.consumer.pending{messaging.destination.name,
// messaging.consumer.group.name} and relay.messages.held, the counters
// messaging.client.sent.messages and messaging.client.consumed.messages, and
// the histograms messaging.client.operation.duration and
// messaging.process.duration (seconds).
func TestTelemetry(t *testing.T, h Harness) {
	if !h.Capabilities.Telemetry {
		t.Skip("pubsubtest: the backend declares no telemetry (Capabilities.Telemetry)")
	}
	if h.NewBroker == nil || h.NewPublisher == nil || h.NewSubscriber == nil {
		t.Fatal("pubsubtest: TestTelemetry needs NewBroker, NewPublisher and NewSubscriber")
	}
	s := &telSuite{wm: &wmSuite{h: h, bytes: &byteSuite{h: h}}}
	for _, c := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a message published in a span on the byte face and handled on the Watermill face is one trace", s.testByteToWatermill},
		{"a message published in a span on the Watermill face and handled on the byte face is one trace", s.testWatermillToByte},
		{"baggage in the publisher's context reaches the Watermill handler's context, on both faces", s.testBaggage},
		{"a message that fails twice and then succeeds has three process spans and outcomes retried=2 acked=1", s.testRetries},
		{"a poison message is dead-lettered once and its dead letter carries the trace context", s.testDeadLetter},
		{"the lag gauge reads the backlog of a group with no consumer, and 0 once it is consumed", s.testLag},
		{"the sent and consumed counters and both duration histograms count every message, and the held gauge counts what is fetched and not settled", s.testCounts},
		{"a message held unacknowledged at Close is counted handed_back, and the held gauge returns to 0", s.testHandedBackOutcome},
		{"a message without trace context is processed in a new root span", s.testForeign},
		{"a malformed traceparent is ignored: a new root span, and the message is delivered", s.testMalformed},
	} {
		t.Run(c.name, c.run)
	}
}

type telSuite struct{ wm *wmSuite }

// recorders are one sub-test's SDK providers and their in-memory readers.
type recorders struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

// propagators is what the suite configures: W3C Trace Context and Baggage.
var propagators = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

func newRecorders(t *testing.T) *recorders {
	r := &recorders{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	r.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitShort)
		defer cancel()
		if err := r.tp.Shutdown(ctx); err != nil {
			t.Errorf("tracer provider shutdown: %v", err)
		}
		if err := r.mp.Shutdown(ctx); err != nil {
			t.Errorf("meter provider shutdown: %v", err)
		}
	})
	return r
}

// config returns DefaultConfig recording with r.
func (r *recorders) config() Config {
	cfg := DefaultConfig()
	cfg.TracerProvider, cfg.MeterProvider, cfg.Propagators = r.tp, r.mp, propagators
	return cfg
}

// ended returns the ended spans named name.
func (r *recorders) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// waitSpans waits until n spans named name ended, and returns them.
func (r *recorders) waitSpans(t *testing.T, name string, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	eventually(t, waitShort, func() bool { return len(r.ended(name)) >= n }, "%d ended spans %q, got %d", n, name, len(r.ended(name)))
	return r.ended(name)
}

// collect reads the metrics now.
func (r *recorders) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	return rm
}

// value returns the int64 point of metric name (a sum or a gauge) whose
// attributes include every one of attrs, and whether there is one.
func value(rm metricdata.ResourceMetrics, name string, attrs ...attribute.KeyValue) (int64, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			var points []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				points = d.DataPoints
			case metricdata.Gauge[int64]:
				points = d.DataPoints
			}
			for _, p := range points {
				if hasAll(p.Attributes, attrs) {
					return p.Value, true
				}
			}
		}
	}
	return 0, false
}

// histogram returns the count and sum of the float64 histogram point of
// metric name whose attributes include every one of attrs, and whether
// there is one.
func histogram(rm metricdata.ResourceMetrics, name string, attrs ...attribute.KeyValue) (count uint64, sum float64, ok bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if d, isHist := m.Data.(metricdata.Histogram[float64]); isHist {
				for _, p := range d.DataPoints {
					if hasAll(p.Attributes, attrs) {
						return p.Count, p.Sum, true
					}
				}
			}
		}
	}
	return 0, 0, false
}

func hasAll(set attribute.Set, attrs []attribute.KeyValue) bool {
	for _, kv := range attrs {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

func outcome(topic, o string) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("messaging.destination.name", topic), attribute.String("relay.delivery.outcome", o)}
}

func attrInt(s sdktrace.ReadOnlySpan, key string) (int64, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.AsInt64(), true
		}
	}
	return 0, false
}

// checkChild fails t unless child's parent is parent, in parent's trace.
func checkChild(t *testing.T, child sdktrace.ReadOnlySpan, parent trace.SpanContext, what string) {
	t.Helper()
	if child.Parent().TraceID() != parent.TraceID() || child.Parent().SpanID() != parent.SpanID() {
		t.Fatalf("%s: span %q has parent %s/%s, want %s/%s", what, child.Name(),
			child.Parent().TraceID(), child.Parent().SpanID(), parent.TraceID(), parent.SpanID())
	}
}

func (s *telSuite) testByteToWatermill(t *testing.T) {
	r := newRecorders(t)
	cfg := r.config()
	topic := NewTopic(t)
	b := s.wm.bytes.broker(t, cfg)
	ch := subscribeWM(t, s.wm.subscriber(t, cfg), topic)

	ctx, request := r.tp.Tracer("pubsubtest").Start(context.Background(), "request")
	if err := b.Publish(ctx, topic, []byte("traced")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	request.End()
	msg := receiveWM(t, ch, waitShort, "the traced message")
	_, handler := r.tp.Tracer("pubsubtest").Start(msg.Context(), "handler")
	handler.End()
	msg.Ack()

	send := r.waitSpans(t, "send "+topic, 1)[0]
	process := r.waitSpans(t, "process "+topic, 1)[0]
	if send.SpanKind() != trace.SpanKindProducer || process.SpanKind() != trace.SpanKindConsumer {
		t.Fatalf("span kinds: send %v, process %v; want producer, consumer", send.SpanKind(), process.SpanKind())
	}
	checkChild(t, send, request.SpanContext(), "the producer span")
	checkChild(t, process, send.SpanContext(), "the process span")
	checkChild(t, r.waitSpans(t, "handler", 1)[0], process.SpanContext(), "the handler's span")
}

func (s *telSuite) testWatermillToByte(t *testing.T) {
	r := newRecorders(t)
	cfg := r.config()
	topic := NewTopic(t)
	in := newInbox()
	subscribe(t, s.wm.bytes.broker(t, cfg), topic, in.handler(nil))

	ctx, request := r.tp.Tracer("pubsubtest").Start(context.Background(), "request")
	msg := message.NewMessage(watermill.NewUUID(), []byte("traced"))
	msg.SetContext(ctx)
	publishWM(t, s.wm.publisher(t, cfg), topic, msg)
	request.End()
	in.waitDistinct(t, 1, waitShort, "the traced message")

	send := r.waitSpans(t, "send "+topic, 1)[0]
	process := r.waitSpans(t, "process "+topic, 1)[0]
	checkChild(t, send, request.SpanContext(), "the producer span")
	checkChild(t, process, send.SpanContext(), "the process span")
	if id := attrString(process, "messaging.message.id"); id != msg.UUID {
		t.Fatalf("process span messaging.message.id %q, want the UUID %q", id, msg.UUID)
	}
}

// testBaggage: with the Baggage propagator configured (the suite's
// propagators), baggage set in the publisher's context travels in the
// message and is in msg.Context() on the Watermill face, whichever face
// published it.
func (s *telSuite) testBaggage(t *testing.T) {
	r := newRecorders(t)
	cfg := r.config()
	topic := NewTopic(t)
	ch := subscribeWM(t, s.wm.subscriber(t, cfg), topic)
	member, err := baggage.NewMember("tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(member)
	if err != nil {
		t.Fatal(err)
	}
	ctx := baggage.ContextWithBaggage(context.Background(), bag)
	if err := s.wm.bytes.broker(t, cfg).Publish(ctx, topic, []byte("bytes")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	msg := message.NewMessage(watermill.NewUUID(), []byte("watermill"))
	msg.SetContext(ctx)
	publishWM(t, s.wm.publisher(t, cfg), topic, msg)
	for range 2 {
		got := receiveWM(t, ch, waitShort, "a message published with baggage")
		got.Ack()
		if v := baggage.FromContext(got.Context()).Member("tenant").Value(); v != "acme" {
			t.Errorf("message %q: baggage tenant = %q in msg.Context(), want %q (baggage: %q)", got.Payload, v, "acme",
				baggage.FromContext(got.Context()).String())
		}
	}
}

func attrString(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

func (s *telSuite) testRetries(t *testing.T) {
	r := newRecorders(t)
	cfg := r.config()
	topic := NewTopic(t)
	var calls atomic.Int32
	subscribe(t, s.wm.bytes.broker(t, cfg), topic, func([]byte) error {
		if calls.Add(1) <= 2 {
			return errInduced
		}
		return nil
	})
	publish(t, s.wm.bytes.broker(t, cfg), topic, []byte("flaky"))

	spans := r.waitSpans(t, "process "+topic, 3)
	var attempts []int64
	for _, sp := range spans {
		n, _ := attrInt(sp, "relay.delivery.attempt")
		attempts = append(attempts, n)
	}
	if fmt.Sprint(attempts) != "[1 2 3]" {
		t.Fatalf("process spans' relay.delivery.attempt %v, want [1 2 3]", attempts)
	}
	if spans[0].Status().Code.String() != "Error" || spans[2].Status().Code.String() != "Unset" {
		t.Fatalf("span status: first %v, last %v; want Error, Unset", spans[0].Status().Code, spans[2].Status().Code)
	}
	if !hasEvent(spans[0], "retry") {
		t.Fatalf("the first process span has no retry event: %v", spans[0].Events())
	}
	rm := r.collect(t)
	retried, _ := value(rm, "relay.delivery.outcomes", outcome(topic, "retried")...)
	acked, _ := value(rm, "relay.delivery.outcomes", outcome(topic, "acked")...)
	if retried != 2 || acked != 1 {
		t.Fatalf("relay.delivery.outcomes: retried=%d acked=%d, want 2 and 1", retried, acked)
	}
	r.waitUnheld(t, topic, cfg.Group, "after two retries and an ack")
}

// waitUnheld waits until the relay.messages.held gauge of topic and group
// reads 0, and fails t with what it read last otherwise.
func (r *recorders) waitUnheld(t *testing.T, topic, group, when string) {
	t.Helper()
	var held int64
	if !poll(waitShort, func() bool {
		held, _ = value(r.collect(t), "relay.messages.held",
			attribute.String("messaging.destination.name", topic), attribute.String("messaging.consumer.group.name", group))
		return held == 0
	}) {
		t.Fatalf("%s: relay.messages.held %d after %v, want 0", when, held, waitShort)
	}
}

func hasEvent(s sdktrace.ReadOnlySpan, name string) bool {
	for _, e := range s.Events() {
		if e.Name == name {
			return true
		}
	}
	return false
}

func (s *telSuite) testDeadLetter(t *testing.T) {
	r := newRecorders(t)
	cfg := r.config()
	topic := NewTopic(t)
	dead := s.wm.subscriber(t, DefaultConfig())
	deadCh := subscribeWM(t, dead, relay.DefaultDeadLetterTopic(topic))
	b := s.wm.bytes.broker(t, cfg)
	subscribe(t, b, topic, func([]byte) error { return fmt.Errorf("poison: %w", relay.ErrPermanent) })

	ctx, request := r.tp.Tracer("pubsubtest").Start(context.Background(), "request")
	if err := b.Publish(ctx, topic, []byte("poison")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	request.End()
	dl := receiveWM(t, deadCh, waitShort, "the dead letter")
	dl.Ack()
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier(dl.Metadata)))
	if !sc.IsValid() || sc.TraceID() != request.SpanContext().TraceID() {
		t.Fatalf("the dead letter's traceparent %q is not of the source's trace %s", dl.Metadata.Get("traceparent"), request.SpanContext().TraceID())
	}
	process := r.waitSpans(t, "process "+topic, 1)[0]
	if !hasEvent(process, "dead_letter") {
		t.Fatalf("the process span has no dead_letter event: %v", process.Events())
	}
	rm := r.collect(t)
	if n, _ := value(rm, "relay.delivery.outcomes", outcome(topic, "dead_lettered")...); n != 1 {
		t.Fatalf("relay.delivery.outcomes dead_lettered=%d, want 1", n)
	}
}

func (s *telSuite) testLag(t *testing.T) {
	r := newRecorders(t)
	cfg := r.config()
	cfg.Concurrency = 16
	topic := NewTopic(t)
	sub := s.wm.subscriber(t, cfg)
	init, ok := sub.(message.SubscribeInitializer)
	if !ok {
		t.Skip("pubsubtest: the lag row needs a subscriber with SubscribeInitialize, to make a group with no consumer")
	}
	if err := init.SubscribeInitialize(topic); err != nil {
		t.Fatalf("SubscribeInitialize: %v", err)
	}
	n := 1000
	publishAll(t, s.wm.bytes.broker(t, DefaultConfig()), topic, messages("lag", n))

	attrs := []attribute.KeyValue{attribute.String("messaging.destination.name", topic), attribute.String("messaging.consumer.group.name", cfg.Group)}
	var lag int64
	eventually(t, waitShort, func() bool {
		lag, _ = value(r.collect(t), "relay.consumer.lag", attrs...)
		return lag == int64(n)
	}, "relay.consumer.lag %d, want %d", lag, n)

	ch := subscribeWM(t, sub, topic)
	for i := range n {
		receiveWM(t, ch, waitShort, fmt.Sprintf("message %d of the backlog", i+1)).Ack()
	}
	var pending int64
	eventually(t, waitShort, func() bool {
		rm := r.collect(t)
		lag, _ = value(rm, "relay.consumer.lag", attrs...)
		pending, _ = value(rm, "relay.consumer.pending", attrs...)
		return lag == 0 && pending == 0
	}, "relay.consumer.lag %d and relay.consumer.pending %d after consuming, want 0 and 0", lag, pending)
}

// noPropagation carries no trace context: a client that does not know
// OpenTelemetry.
var noPropagation = propagation.NewCompositeTextMapPropagator()

func (s *telSuite) testForeign(t *testing.T) {
	r := newRecorders(t)
	cfg := r.config()
	topic := NewTopic(t)
	in := newInbox()
	subscribe(t, s.wm.bytes.broker(t, cfg), topic, in.handler(nil))

	foreign := DefaultConfig()
	foreign.Propagators = noPropagation
	foreign.TracerProvider = r.tp
	ctx, request := r.tp.Tracer("pubsubtest").Start(context.Background(), "request")
	if err := s.wm.bytes.broker(t, foreign).Publish(ctx, topic, []byte("foreign")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	request.End()
	in.waitDistinct(t, 1, waitShort, "the foreign message")
	s.checkRoot(t, r, topic)
}

// checkRoot checks that the one process span of topic is a root, and that
// the message was acknowledged.
func (s *telSuite) checkRoot(t *testing.T, r *recorders, topic string) {
	t.Helper()
	process := r.waitSpans(t, "process "+topic, 1)[0]
	if process.Parent().IsValid() {
		t.Fatalf("the process span has parent %s, want a new root", process.Parent().SpanID())
	}
	if n, _ := value(r.collect(t), "relay.delivery.outcomes", outcome(topic, "acked")...); n != 1 {
		t.Fatalf("relay.delivery.outcomes acked=%d, want 1", n)
	}
}

func (s *telSuite) testMalformed(t *testing.T) {
	r := newRecorders(t)
	cfg := r.config()
	topic := NewTopic(t)
	in := newInbox()
	subscribe(t, s.wm.bytes.broker(t, cfg), topic, in.handler(nil))

	foreign := DefaultConfig()
	foreign.Propagators = noPropagation
	msg := message.NewMessage(watermill.NewUUID(), []byte("malformed"))
	msg.Metadata.Set("traceparent", "00-not-a-trace-context-zz")
	msg.Metadata.Set("tracestate", "=,=")
	publishWM(t, s.wm.publisher(t, foreign), topic, msg)
	in.waitDistinct(t, 1, waitShort, "the message with a malformed traceparent")
	s.checkRoot(t, r, topic)
}

// testCounts publishes n messages and consumes them with handlers that wait
// for a release and then take a moment. While they wait, the held gauge
// counts every message the subscription fetched and has not settled (those
// taken ahead and waiting for a worker included), so it reads what the group
// has pending; once all are settled it reads 0. Then the sent and consumed
// counters read n, and the publish and process duration histograms hold n
// measurements each, of more than no time in all.
func (s *telSuite) testCounts(t *testing.T) {
	r := newRecorders(t)
	cfg := r.config()
	cfg.Concurrency = 2
	topic := NewTopic(t)
	n := 20
	b := s.wm.bytes.broker(t, cfg)
	publishAll(t, b, topic, messages("count", n))

	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the broker's Close, even after a failure
	in := newInbox()
	subscribe(t, b, topic, in.handler(func([]byte) error {
		<-release
		time.Sleep(time.Millisecond)
		return nil
	}))

	dest := attribute.String("messaging.destination.name", topic)
	group := attribute.String("messaging.consumer.group.name", cfg.Group)
	var held, pending int64
	if !poll(waitShort, func() bool {
		rm := r.collect(t)
		held, _ = value(rm, "relay.messages.held", dest, group)
		pending, _ = value(rm, "relay.consumer.pending", dest, group)
		return held > 0 && held == pending
	}) {
		t.Fatalf("while the handlers wait: relay.messages.held %d, want > 0 and the group's relay.consumer.pending %d "+
			"(every message fetched and not settled, those waiting for a worker included)", held, pending)
	}

	releaseOnce()
	in.waitDistinct(t, n, waitShort, "the counted messages")
	var sent, consumed int64
	var pubCount, procCount uint64
	var pubSum, procSum float64
	if !poll(waitShort, func() bool {
		rm := r.collect(t)
		held, _ = value(rm, "relay.messages.held", dest, group)
		sent, _ = value(rm, "messaging.client.sent.messages", dest)
		consumed, _ = value(rm, "messaging.client.consumed.messages", dest, group)
		pubCount, pubSum, _ = histogram(rm, "messaging.client.operation.duration", dest)
		procCount, procSum, _ = histogram(rm, "messaging.process.duration", dest, group)
		return held == 0 && sent == int64(n) && consumed == int64(n) &&
			pubCount == uint64(n) && pubSum > 0 && procCount == uint64(n) && procSum > 0
	}) {
		t.Fatalf("after %d messages were published and handled: relay.messages.held %d (want 0), "+
			"messaging.client.sent.messages %d and messaging.client.consumed.messages %d (want %d), "+
			"messaging.client.operation.duration count %d sum %gs and messaging.process.duration count %d sum %gs "+
			"(want counts %d, sums > 0)",
			n, held, sent, consumed, n, pubCount, pubSum, procCount, procSum, n)
	}
}

// testHandedBackOutcome has a Watermill subscriber with Concurrency 1 take
// a message, which its handler holds without acknowledging, while more are
// taken ahead; then it closes the subscriber. The message out is handed back
// to the group, which relay.delivery.outcomes counts as handed_back, and the
// held gauge returns to 0: neither the message out nor those taken ahead
// stay counted as held.
func (s *telSuite) testHandedBackOutcome(t *testing.T) {
	r := newRecorders(t)
	cfg := r.config()
	cfg.Concurrency = 1
	topic := NewTopic(t)
	publishAll(t, s.wm.bytes.broker(t, DefaultConfig()), topic, messages("held", 5))
	sub := s.wm.subscriber(t, cfg)
	ch := subscribeWM(t, sub, topic)
	receiveWM(t, ch, waitShort, "the message the handler holds") // never acked

	dest := attribute.String("messaging.destination.name", topic)
	group := attribute.String("messaging.consumer.group.name", cfg.Group)
	var held int64
	if !poll(waitShort, func() bool {
		held, _ = value(r.collect(t), "relay.messages.held", dest, group)
		return held >= 1
	}) {
		t.Fatalf("relay.messages.held %d while a handler holds a message, want at least 1", held)
	}
	if err := closeWithin(sub.Close); err != nil {
		t.Fatalf("Close with a message held unacknowledged: %v", err)
	}
	var handedBack int64
	if !poll(waitShort, func() bool {
		rm := r.collect(t)
		held, _ = value(rm, "relay.messages.held", dest, group)
		handedBack, _ = value(rm, "relay.delivery.outcomes", outcome(topic, "handed_back")...)
		return held == 0 && handedBack >= 1
	}) {
		t.Fatalf("after Close: relay.delivery.outcomes handed_back=%d (want at least 1) and relay.messages.held %d (want 0)",
			handedBack, held)
	}
}
