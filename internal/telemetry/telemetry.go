// Package telemetry is the one place where relay's backends make OpenTelemetry
// spans and metrics and carry the trace context in a message's metadata.
// Engines and faces call it; no backend writes its own instrumentation.
//
// It imports the OpenTelemetry API modules only (otel, trace, metric,
// propagation, semconv); the application chooses the SDK. Without options a
// [Telemetry] uses the global providers and propagator, read when it is made,
// as OpenTelemetry's own instrumentation libraries do; the global ones
// forward to an SDK installed later.
//
// # Cost when off
//
// While no SDK is installed (the global providers still the placeholders of
// the otel package, or a noop provider), nothing is started, recorded or
// allocated per message. A publish and a delivery attempt each ask once, when
// they start, whether an SDK was installed since (an atomic load of each
// global provider), and keep the answer until they end, so that neither is
// recorded half-way; once a placeholder was seen forwarding to an SDK, the
// answer is one atomic load. Nothing is injected while the global propagator
// is still the placeholder. The held gauge is a count per subscription,
// added to atomically and reported when a reader collects, so that it is
// right even for messages held before an SDK was installed.
//
// # Traces
//
// One producer span per published message, named "send <topic>" (semconv
// messaging: "{operation} {destination}"), kind PRODUCER; a Watermill batch
// gets one span per message, each a child of that message's context. Its
// context goes into the message's metadata with the configured propagator
// (W3C Trace Context: traceparent, tracestate; baggage when the propagator
// includes it).
//
// One consumer span per delivery attempt, "process <topic>", kind CONSUMER,
// whose parent is the context extracted from the message: the producer span
// of the same trace. A message without trace context, or with a malformed
// traceparent, gets a new root span and is delivered as any other. The span
// ends once the delivery is settled; a retry and a dead letter are events
// on it ("retry", "dead_letter"), and a failed handler sets its status to
// Error.
//
// Attributes: messaging.system, messaging.destination.name,
// messaging.consumer.group.name, messaging.message.id (the message's UUID),
// messaging.operation.name and .type, and relay.delivery.attempt (the
// delivery count, 1 for the first; semconv has a delivery count for Azure
// Service Bus only). Semconv v1.43.0 has no well-known messaging.system value
// for NATS, Redis or an in-process broker: relay uses "nats", "redis" and
// "memory".
package telemetry

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/messagingconv"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of relay's tracer and meter.
const ScopeName = "github.com/go-relay/relay"

// Names of what relay records that the semantic conventions do not name.
const (
	AttrAttempt     = attribute.Key("relay.delivery.attempt")
	AttrOutcome     = attribute.Key("relay.delivery.outcome")
	MetricOutcomes  = "relay.delivery.outcomes"
	MetricHeld      = "relay.messages.held"
	MetricLag       = "relay.consumer.lag"
	MetricPending   = "relay.consumer.pending"
	EventRetry      = "retry"
	EventDeadLetter = "dead_letter"
)

// Config is what the WithTracerProvider, WithMeterProvider and
// WithPropagators options of a backend set (through the option package,
// which refuses nil); a nil field means the global one.
type Config struct {
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagators    propagation.TextMapPropagator
}

// Outcome is how a delivery attempt ended.
type Outcome int

// The outcomes of relay.delivery.outcomes.
const (
	Acked        Outcome = iota // the handler succeeded; the message is removed
	Retried                     // the handler failed; the message is delivered again
	DeadLettered                // the message went to its dead-letter topic
	HandedBack                  // not processed: its consumer stopped (Close)
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"acked", "retried", "dead_lettered", "handed_back"}

// String returns the outcome's attribute value.
func (o Outcome) String() string { return outcomeNames[o] }

// Telemetry is the instrumentation of one broker, publisher or subscriber.
// Its methods are safe for concurrent use; a nil *Telemetry records nothing.
type Telemetry struct {
	system attribute.KeyValue
	tp     trace.TracerProvider
	mp     metric.MeterProvider
	prop   propagation.TextMapPropagator
	tracer trace.Tracer
	meter  metric.Meter
	// on has a bit of the providers (and propagator) that record: from the
	// start for one that is neither a noop nor the otel package's
	// placeholder, and for good once the placeholder was seen forwarding,
	// which it does from the first install on. Until then a placeholder has
	// its bit shifted by watched on, and its global is looked at.
	on atomic.Uint32

	sent, consumed, outcomes metric.Int64Counter
	opDuration, procDuration metric.Float64Histogram

	topics sync.Map            // topic → *Topic, for publishes
	subs   sync.Map            // subKey → *Topic, for deliveries; read by the held gauge
	heldCB metric.Registration // nil once closed; guarded by lag.mu

	lag lagState
}

// New returns the instrumentation of a value of backend system ("nats",
// "redis", "memory") configured by c. lag reads a group's lag for the
// relay.consumer.lag and relay.consumer.pending gauges; nil (a publisher)
// means no gauges. Call [Telemetry.Close] when the value closes.
func New(system string, c Config, lag LagFunc) *Telemetry {
	t := &Telemetry{system: semconv.MessagingSystemKey.String(system), tp: c.TracerProvider, mp: c.MeterProvider, prop: c.Propagators}
	t.lag.read = lag
	if t.tp == nil {
		t.tp = otel.GetTracerProvider()
	}
	if t.mp == nil {
		t.mp = otel.GetMeterProvider()
	}
	if t.prop == nil {
		t.prop = otel.GetTextMapPropagator()
	}
	var on uint32
	switch {
	case isPlaceholder(t.tp):
		on |= tracing << watched
	case !isNoopTracer(t.tp):
		on |= tracing
	}
	switch {
	case isPlaceholder(t.mp):
		on |= metering << watched
	case !isNoopMeter(t.mp):
		on |= metering
	}
	if isPlaceholder(t.prop) {
		on |= propagating << watched
	} else {
		on |= propagating
	}
	t.on.Store(on)
	t.tracer = t.tp.Tracer(ScopeName)
	t.meter = t.mp.Meter(ScopeName)
	t.instruments()
	return t
}

// isPlaceholder reports whether p is the otel package's global placeholder
// (go.opentelemetry.io/otel/internal/global), which does nothing until an SDK
// is installed with otel.SetTracerProvider, otel.SetMeterProvider or
// otel.SetTextMapPropagator.
func isPlaceholder(p any) bool {
	t := reflect.TypeOf(p)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.PkgPath() == "go.opentelemetry.io/otel/internal/global"
}

func isNoopTracer(p trace.TracerProvider) bool {
	switch p.(type) {
	case tracenoop.TracerProvider, *tracenoop.TracerProvider:
		return true
	}
	return false
}

func isNoopMeter(p metric.MeterProvider) bool {
	switch p.(type) {
	case metricnoop.MeterProvider, *metricnoop.MeterProvider:
		return true
	}
	return false
}

// The bits of Telemetry.on.
const (
	tracing     uint32 = 1 << iota // a span started now may be recorded
	metering                       // a measurement made now may be recorded
	propagating                    // the propagator may inject something

	watched = 4 // shift of the bits of the placeholders still looked at
)

// recording returns the bits of need that are on now: one atomic load, and
// a load of each global provider of need that is still watched.
// StartPublish and Topic.Start have the same lines, so that their off path
// makes no call.
func (t *Telemetry) recording(need uint32) uint32 {
	on := t.on.Load()
	if on&(tracing<<watched) != 0 && need&tracing != 0 && t.tracerMoved() {
		on = t.installed(tracing)
	}
	if on&(metering<<watched) != 0 && need&metering != 0 && t.meterMoved() {
		on = t.installed(metering)
	}
	if on&(propagating<<watched) != 0 && need&propagating != 0 && t.propagatorMoved() {
		on = t.installed(propagating)
	}
	return on & need
}

// tracerMoved reports whether the global tracer provider is no longer the
// placeholder t was made with.
func (t *Telemetry) tracerMoved() bool {
	return !samePointer(otel.GetTracerProvider(), t.tp)
}

// meterMoved is tracerMoved for the meter provider.
func (t *Telemetry) meterMoved() bool {
	return !samePointer(otel.GetMeterProvider(), t.mp)
}

// propagatorMoved is tracerMoved for the propagator.
func (t *Telemetry) propagatorMoved() bool {
	return !samePointer(otel.GetTextMapPropagator(), t.prop)
}

// samePointer reports whether a and b hold the same pointer; with b a
// placeholder, read from the global a is read from, whether a is still b.
// It compares the data words of the two interfaces alone: the placeholders
// are pointers, and a value of any other type is held boxed, never at b's
// address. So it answers as == does, without the runtime call that == makes
// for two interfaces (and without the reloads of the caller's registers
// after that call), which the off path made for every global it looked at.
func samePointer(a, b any) bool {
	return (*[2]unsafe.Pointer)(unsafe.Pointer(&a))[1] == (*[2]unsafe.Pointer)(unsafe.Pointer(&b))[1]
}

// installed is called once the global of bit is no longer the placeholder:
// unless it is a noop, it turns bit on for good and stops watching the
// global (the placeholder forwards to the first provider installed, for
// good). It returns t.on.
func (t *Telemetry) installed(bit uint32) uint32 {
	switch bit {
	case tracing:
		if isNoopTracer(otel.GetTracerProvider()) {
			return t.on.Load()
		}
	case metering:
		if isNoopMeter(otel.GetMeterProvider()) {
			return t.on.Load()
		}
	}
	t.on.Or(bit)
	return t.on.And(^(bit << watched)) &^ (bit << watched)
}

func (t *Telemetry) instruments() {
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := t.meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			errs = append(errs, err)
		}
		if c == nil {
			c = metricnoop.Int64Counter{}
		}
		return c
	}
	histogram := func(name, unit, desc string) metric.Float64Histogram {
		h, err := t.meter.Float64Histogram(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			errs = append(errs, err)
		}
		if h == nil {
			h = metricnoop.Float64Histogram{}
		}
		return h
	}
	sent, consumed := messagingconv.ClientSentMessages{}, messagingconv.ClientConsumedMessages{}
	opDur, procDur := messagingconv.ClientOperationDuration{}, messagingconv.ProcessDuration{}
	t.sent = counter(sent.Name(), sent.Unit(), sent.Description())
	t.consumed = counter(consumed.Name(), consumed.Unit(), consumed.Description())
	t.opDuration = histogram(opDur.Name(), opDur.Unit(), "Duration of a publish, until the server stored the message.")
	t.procDuration = histogram(procDur.Name(), procDur.Unit(), "Duration of a delivery attempt: the handler and the settling of its outcome.")
	t.outcomes = counter(MetricOutcomes, "{message}", "Delivery attempts by outcome: acked, retried, dead_lettered, handed_back.")
	t.registerHeld(&errs)
	t.registerLag(&errs)
	for _, err := range errs {
		handle(err)
	}
}

// registerHeld makes the held gauge, which reports the count of each
// subscription's Topic when a reader collects.
func (t *Telemetry) registerHeld(errs *[]error) {
	held, err := t.meter.Int64ObservableUpDownCounter(MetricHeld, metric.WithUnit("{message}"),
		metric.WithDescription("Messages a consumer holds: fetched and not yet settled (prefetched and running)."))
	if err != nil {
		*errs = append(*errs, err)
		return
	}
	reg, err := t.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		t.subs.Range(func(_, v any) bool {
			tp := v.(*Topic)
			o.ObserveInt64(held, tp.held.Load(), tp.obsOpts...)
			return true
		})
		return nil
	}, held)
	if err != nil {
		*errs = append(*errs, err)
		return
	}
	t.heldCB = reg
}

// Topic holds what the instruments of one topic and group record with,
// computed once, so that a message pays for no attribute set.
type Topic struct {
	t          *Telemetry
	name       string
	held       atomic.Int64 // messages held by the subscriptions of this topic and group
	spanAttrs  []attribute.KeyValue
	opts       []metric.AddOption
	obsOpts    []metric.ObserveOption
	recOpts    []metric.RecordOption
	outcomeOpt [numOutcomes][]metric.AddOption
	sendName   string
	procName   string
}

func (t *Telemetry) newTopic(topic, group string, op attribute.KeyValue, opName string) *Topic {
	kv := []attribute.KeyValue{t.system, semconv.MessagingDestinationName(topic), semconv.MessagingOperationNameKey.String(opName), op}
	if group != "" {
		kv = append(kv, semconv.MessagingConsumerGroupName(group))
	}
	set := attribute.NewSet(kv...)
	tp := &Topic{
		t: t, name: topic, spanAttrs: kv,
		opts:     []metric.AddOption{metric.WithAttributeSet(set)},
		recOpts:  []metric.RecordOption{metric.WithAttributeSet(set)},
		obsOpts:  []metric.ObserveOption{metric.WithAttributeSet(set)},
		sendName: "send " + topic, procName: "process " + topic,
	}
	for o := range numOutcomes {
		oset := attribute.NewSet(append(kv[:len(kv):len(kv)], AttrOutcome.String(o.String()))...)
		tp.outcomeOpt[o] = []metric.AddOption{metric.WithAttributeSet(oset)}
	}
	return tp
}

// publishTopic returns the cached publish attributes of topic.
func (t *Telemetry) publishTopic(topic string) *Topic {
	if v, ok := t.topics.Load(topic); ok {
		return v.(*Topic)
	}
	v, _ := t.topics.LoadOrStore(topic, t.newTopic(topic, "", semconv.MessagingOperationTypeSend, "send"))
	return v.(*Topic)
}

// Publish is the instrumentation of one message being published: end it
// with [Publish.End]. The zero Publish records nothing.
type Publish struct {
	tp    *Topic
	span  trace.Span
	start time.Time
	me    bool // metering when it started
}

// StartPublish starts the producer span of the message id on topic, a child
// of ctx, and returns md with the span's context injected (a new map when md
// is nil and there is something to inject; md unchanged otherwise). The
// caller stores the returned metadata with the message.
func (t *Telemetry) StartPublish(ctx context.Context, topic, id string, md map[string]string) (Publish, map[string]string) {
	if t == nil {
		return Publish{}, md
	}
	on := t.on.Load()
	if on&(tracing<<watched) != 0 && t.tracerMoved() {
		on = t.installed(tracing)
	}
	if on&(metering<<watched) != 0 && t.meterMoved() {
		on = t.installed(metering)
	}
	if on&(propagating<<watched) != 0 && t.propagatorMoved() {
		on = t.installed(propagating)
	}
	if on&(tracing|metering|propagating) == 0 {
		return Publish{}, md
	}
	return t.startPublish(ctx, topic, id, md, on)
}

func (t *Telemetry) startPublish(ctx context.Context, topic, id string, md map[string]string, on uint32) (Publish, map[string]string) {
	var p Publish
	if on&(tracing|metering) != 0 {
		p.tp = t.publishTopic(topic)
		p.start = time.Now()
		p.me = on&metering != 0
	}
	if on&tracing != 0 {
		if !trace.SpanContextFromContext(ctx).IsValid() && len(md) > 0 {
			// A message that already carries trace context (forwarded by a
			// handler that kept its metadata, as Watermill services that
			// keep traceparent do) continues that trace.
			ctx = t.Extract(ctx, md)
		}
		ctx, p.span = t.tracer.Start(ctx, p.tp.sendName, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(p.tp.spanAttrs...), trace.WithAttributes(semconv.MessagingMessageID(id)))
	}
	if on&propagating == 0 {
		return p, md
	}
	return p, t.inject(ctx, md)
}

// End records the publish's outcome: err nil when the server stored it.
func (p Publish) End(err error) {
	if p.tp != nil {
		p.end(err)
	}
}

func (p *Publish) end(err error) {
	t := p.tp.t
	if p.me {
		if err == nil {
			t.sent.Add(context.Background(), 1, p.tp.opts...)
		}
		t.opDuration.Record(context.Background(), time.Since(p.start).Seconds(), p.tp.recOpts...)
	}
	if p.span != nil {
		if err != nil {
			p.span.RecordError(err)
			p.span.SetStatus(codes.Error, err.Error())
			p.span.SetAttributes(semconv.ErrorType(err))
		}
		p.span.End()
	}
}

// Inject returns md with the trace context and baggage of ctx injected by the
// configured propagator. It does nothing (and allocates nothing) when ctx
// carries neither a valid span context nor baggage, or when the propagator
// is the global placeholder and none was installed.
func (t *Telemetry) Inject(ctx context.Context, md map[string]string) map[string]string {
	if t == nil || t.recording(propagating) == 0 {
		return md
	}
	return t.inject(ctx, md)
}

func (t *Telemetry) inject(ctx context.Context, md map[string]string) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() && baggage.FromContext(ctx).Len() == 0 {
		return md
	}
	if md == nil {
		md = make(map[string]string, 2)
	}
	t.prop.Inject(ctx, propagation.MapCarrier(md))
	return md
}

// Extract returns ctx with the trace context and baggage that the configured
// propagator finds in md. A missing or malformed traceparent leaves ctx as it
// is, so the span started from it is a new root.
func (t *Telemetry) Extract(ctx context.Context, md map[string]string) context.Context {
	if t == nil || len(md) == 0 {
		return ctx
	}
	return t.prop.Extract(ctx, propagation.MapCarrier(md))
}

type subKey struct{ topic, group string }

// Subscription returns the instrumentation of a consumer group's
// subscriptions to topic: the same *Topic for every subscription of the
// group to topic, so that the held gauge counts them together.
func (t *Telemetry) Subscription(topic, group string) *Topic {
	if t == nil {
		return nil
	}
	k := subKey{topic, group}
	if v, ok := t.subs.Load(k); ok {
		return v.(*Topic)
	}
	v, _ := t.subs.LoadOrStore(k, t.newTopic(topic, group, semconv.MessagingOperationTypeProcess, "process"))
	return v.(*Topic)
}

// Hold adds n (negative to release) to the messages held: fetched by the
// subscription and not yet settled. It counts whether or not an SDK is
// installed; a reader collects the count.
func (tp *Topic) Hold(n int64) {
	if tp == nil {
		return
	}
	tp.held.Add(n)
}

// Attempt is the instrumentation of one delivery attempt: made by
// [Topic.Start], ended by [Attempt.Settled]. The zero Attempt records
// nothing; it is a value, so that a delivery carries it without allocating.
type Attempt struct {
	tp    *Topic
	ctx   context.Context // the extracted context, with the process span when tracing
	span  trace.Span
	start time.Time
	me    bool // metering when it started
}

// Start begins delivery attempt number attempt of the message id with
// metadata md: it counts the message consumed and starts the process span,
// a child of the context extracted from md (or a new root), below ctx.
func (tp *Topic) Start(ctx context.Context, id string, attempt int, md map[string]string) Attempt {
	if tp == nil {
		return Attempt{}
	}
	t := tp.t
	on := t.on.Load()
	if on&(tracing<<watched) != 0 && t.tracerMoved() {
		on = t.installed(tracing)
	}
	if on&(metering<<watched) != 0 && t.meterMoved() {
		on = t.installed(metering)
	}
	if on&(tracing|metering) == 0 {
		return Attempt{}
	}
	return tp.start(ctx, id, attempt, md, on)
}

func (tp *Topic) start(ctx context.Context, id string, attempt int, md map[string]string, on uint32) Attempt {
	t := tp.t
	a := Attempt{tp: tp, start: time.Now(), me: on&metering != 0}
	if a.me {
		t.consumed.Add(context.Background(), 1, tp.opts...)
	}
	if on&tracing != 0 {
		a.ctx, a.span = t.tracer.Start(t.Extract(ctx, md), tp.procName, trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(tp.spanAttrs...),
			trace.WithAttributes(semconv.MessagingMessageID(id), AttrAttempt.Int(attempt)))
	}
	return a
}

// Context returns ctx carrying the attempt's process span and the baggage of
// its message, so that a handler's spans are the process span's children.
// Without a span it returns ctx.
func (a *Attempt) Context(ctx context.Context) context.Context {
	if a.span == nil {
		return ctx
	}
	ctx = trace.ContextWithSpan(ctx, a.span)
	if b := baggage.FromContext(a.ctx); b.Len() > 0 {
		ctx = baggage.ContextWithBaggage(ctx, b)
	}
	return ctx
}

// Settled records how the attempt ended: its outcome, the handler's error
// (nil on success), and for a retry the delay before the next delivery or
// for a dead letter its topic (where). It ends the process span. Call it
// once; later calls do nothing.
func (a *Attempt) Settled(o Outcome, err error, delay time.Duration, where string) {
	if a.tp != nil {
		a.settled(o, err, delay, where)
	}
}

func (a *Attempt) settled(o Outcome, err error, delay time.Duration, where string) {
	tp := a.tp
	a.tp = nil
	t := tp.t
	if a.me {
		t.outcomes.Add(context.Background(), 1, tp.outcomeOpt[o]...)
		t.procDuration.Record(context.Background(), time.Since(a.start).Seconds(), tp.recOpts...)
	}
	span := a.span
	if span == nil {
		return
	}
	a.span = nil
	span.SetAttributes(AttrOutcome.String(o.String()))
	switch o {
	case Retried:
		span.AddEvent(EventRetry, trace.WithAttributes(attribute.Int64("relay.retry.delay_ms", delay.Milliseconds())))
	case DeadLettered:
		span.AddEvent(EventDeadLetter, trace.WithAttributes(attribute.String("relay.dead_letter.topic", where)))
	}
	if err != nil && o != HandedBack {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(semconv.ErrorType(err))
	}
	span.End()
}

// handle reports an instrumentation error to OpenTelemetry's error handler.
func handle(err error) { otel.Handle(err) }
