package memory

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// In a Watermill batch every message started gets its producer span ended:
// the stored ones without error, the one whose context ended the wait for
// room and those of its run after it with that error.
func TestWatermillBatchEndsEverySpanWithItsOutcome(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	hub := testHub(t, WithCapacity(18))
	pub, err := NewPublisher(hub, WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var msgs []*message.Message
	for i := range 20 {
		msg := message.NewMessage("m"+strconv.Itoa(i), []byte("x"))
		if i == 18 {
			msg.SetContext(short) // the first that finds the topic full (no group: nothing can be dropped)
		}
		msgs = append(msgs, msg)
	}
	if err := pub.Publish("batch-spans", msgs...); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	failed := map[string]bool{}
	ended := 0
	for _, s := range rec.Ended() {
		if s.SpanKind() != trace.SpanKindProducer {
			continue
		}
		ended++
		if s.Status().Code == codes.Error {
			for _, a := range s.Attributes() {
				if a.Key == "messaging.message.id" {
					failed[a.Value.AsString()] = true
				}
			}
		}
	}
	if ended != 20 {
		t.Fatalf("%d producer spans ended, want one per message (20)", ended)
	}
	if len(failed) != 2 || !failed["m18"] || !failed["m19"] {
		t.Fatalf("spans with an error: %v, want those of m18 (its context ended) and m19 (after it)", failed)
	}
}
