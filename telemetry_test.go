package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/internal/testkit/redistest"
	"github.com/go-relay/relay/natsjs"
	"github.com/go-relay/relay/redisstreams"
)

// TestRouterKeepsOneTraceFromNATSToRedis runs a Watermill router that
// consumes from NATS JetStream and publishes to Redis Streams with the
// context of the message it handles, as a router handler does, and checks
// that the message's whole way is one trace: the request's span, the
// producer and process spans on NATS, the producer and process spans on
// Redis, and the last handler's span, each the child of the one before.
func TestRouterKeepsOneTraceFromNATSToRedis(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	prop := propagation.TraceContext{}

	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	rc := redistest.Client(t, redistest.Start(t))
	natsOpts := []natsjs.Option{natsjs.WithGroup("router"), natsjs.WithTracerProvider(tp), natsjs.WithPropagators(prop)}
	redisOpts := []redisstreams.Option{redisstreams.WithGroup("billing"), redisstreams.WithTracerProvider(tp),
		redisstreams.WithPropagators(prop), redisstreams.WithBlockTimeout(100 * time.Millisecond)}

	natsPub, err := natsjs.NewBroker(js, natsOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = natsPub.Close() })
	natsSub, err := natsjs.NewSubscriber(js, natsOpts...)
	if err != nil {
		t.Fatal(err)
	}
	redisPub, err := redisstreams.NewPublisher(rc, redisOpts...)
	if err != nil {
		t.Fatal(err)
	}
	redisSub, err := redisstreams.NewSubscriber(rc, redisOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = redisSub.Close(); _ = redisPub.Close(); _ = natsSub.Close() })

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	router.AddHandler("forward", "orders.placed", natsSub, "orders.billed", redisPub,
		func(msg *message.Message) ([]*message.Message, error) {
			out := message.NewMessage(watermill.NewUUID(), msg.Payload)
			out.SetContext(msg.Context()) // what keeps the trace going
			return []*message.Message{out}, nil
		})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = router.Run(ctx) }()
	t.Cleanup(func() { _ = router.Close() })
	select {
	case <-router.Running():
	case <-ctx.Done():
		t.Fatal("the router did not start")
	}
	billed, err := redisSub.Subscribe(ctx, "orders.billed")
	if err != nil {
		t.Fatal(err)
	}

	reqCtx, request := tp.Tracer("test").Start(ctx, "request")
	if err := natsPub.Publish(reqCtx, "orders.placed", []byte("order 1")); err != nil {
		t.Fatal(err)
	}
	request.End()
	select {
	case msg := <-billed:
		_, handler := tp.Tracer("test").Start(msg.Context(), "bill")
		handler.End()
		msg.Ack()
	case <-ctx.Done():
		t.Fatal("no message on orders.billed within 30s")
	}

	chain := []string{"request", "send orders.placed", "process orders.placed", "send orders.billed", "process orders.billed", "bill"}
	spans := map[string]sdktrace.ReadOnlySpan{}
	deadline := time.Now().Add(10 * time.Second)
	for len(spans) < len(chain) && time.Now().Before(deadline) {
		for _, s := range rec.Ended() {
			spans[s.Name()] = s
		}
		time.Sleep(10 * time.Millisecond)
	}
	var parent trace.SpanContext
	for _, name := range chain {
		s, ok := spans[name]
		if !ok {
			t.Fatalf("no ended span %q; have %d of %v", name, len(spans), chain)
		}
		if parent.IsValid() && (s.Parent().SpanID() != parent.SpanID() || s.Parent().TraceID() != parent.TraceID()) {
			t.Fatalf("span %q has parent %s in trace %s, want %s in trace %s", name, s.Parent().SpanID(),
				s.Parent().TraceID(), parent.SpanID(), parent.TraceID())
		}
		parent = s.SpanContext()
	}
}
