package memory

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

// The defaults shared by every backend are written as literal values, so that
// go doc shows them, and equal the shared ones.
func TestSharedDefaultsAreLiteralValues(t *testing.T) {
	if DefaultMaxDeliver != delivery.DefaultMaxDeliver {
		t.Errorf("DefaultMaxDeliver = %d, want delivery's %d", DefaultMaxDeliver, delivery.DefaultMaxDeliver)
	}
	if DefaultMinBackoff != delivery.DefaultMinBackoff {
		t.Errorf("DefaultMinBackoff = %v, want delivery's %v", DefaultMinBackoff, delivery.DefaultMinBackoff)
	}
	if DefaultMaxBackoff != delivery.DefaultMaxBackoff {
		t.Errorf("DefaultMaxBackoff = %v, want delivery's %v", DefaultMaxBackoff, delivery.DefaultMaxBackoff)
	}
	if got, want := DefaultDeadLetterTopic("t"), delivery.DefaultDeadLetterTopic("t"); got != want {
		t.Errorf("DefaultDeadLetterTopic(%q) = %q, want %q", "t", got, want)
	}

	f, err := parser.ParseFile(token.NewFileSet(), "options.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if !slices.Contains([]string{"DefaultMaxDeliver", "DefaultMinBackoff", "DefaultMaxBackoff"}, name.Name) {
				continue
			}
			found++
			ast.Inspect(vs.Values[i], func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name != "time" {
						t.Errorf("%s is defined by %s.%s; want a literal value that go doc shows", name.Name, id.Name, sel.Sel.Name)
					}
				}
				return true
			})
		}
		return true
	})
	if found != 3 {
		t.Fatalf("found %d of the 3 shared defaults in options.go", found)
	}
}

// A Watermill message whose context is done is not published: Publish stores
// none of the messages and returns the context's error.
func TestWatermillPublishHonoursMessageContext(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctxs []context.Context // of the messages, in order
	}{
		{name: "single message", ctxs: []context.Context{canceled}},
		{name: "last of a batch", ctxs: []context.Context{context.Background(), canceled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := testHub(t)
			pub, err := NewPublisher(hub)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = pub.Close() })
			var msgs []*message.Message
			for i, ctx := range tt.ctxs {
				msg := message.NewMessage(string(rune('a'+i)), []byte("x"))
				msg.SetContext(ctx)
				msgs = append(msgs, msg)
			}
			if err := pub.Publish("ctx", msgs...); !errors.Is(err, context.Canceled) {
				t.Fatalf("Publish of a message whose context is done = %v, want an error wrapping context.Canceled", err)
			}
			if got := stored(hub, "ctx"); got != 0 {
				t.Fatalf("topic holds %d messages, want none", got)
			}
		})
	}
}

// logRecorder is a slog.Handler that keeps the records it handles.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &withAttrs{h: h, attrs: attrs}
}
func (h *logRecorder) WithGroup(string) slog.Handler { return h }

// withAttrs is a logRecorder's handler of Logger.With: it adds its
// attributes to each record.
type withAttrs struct {
	h     *logRecorder
	attrs []slog.Attr
}

func (w *withAttrs) Enabled(context.Context, slog.Level) bool { return true }
func (w *withAttrs) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(w.attrs...)
	return w.h.Handle(ctx, r)
}
func (w *withAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &withAttrs{h: w.h, attrs: append(append([]slog.Attr(nil), w.attrs...), attrs...)}
}
func (w *withAttrs) WithGroup(string) slog.Handler { return w }

// at returns the records of level, each as its message and attributes.
func (h *logRecorder) at(level slog.Level) []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, r := range h.records {
		if r.Level != level {
			continue
		}
		m := map[string]string{"msg": r.Message}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		out = append(out, m)
	}
	return out
}

// Log levels are those of every relay backend: a retried failure at Debug, a
// dead letter at Warn with its topic, id, attempts, reason and dead-letter
// topic.
func TestLogLevelsMatchOtherBackends(t *testing.T) {
	hub := testHub(t)
	var logs logRecorder
	b := newTestBroker(t, hub, WithLogger(slog.New(&logs)), WithMaxDeliver(2),
		WithBackoff(time.Millisecond, time.Millisecond))
	if err := b.Subscribe("logs", func([]byte) error { return errors.New("boom") }); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "logs", 1)
	eventually(t, 5*time.Second, "dead letter", func() bool { return stored(hub, "logs.dead") == 1 })
	eventually(t, 5*time.Second, "dead letter logged", func() bool { return len(logs.at(slog.LevelWarn)) == 1 })

	debug := logs.at(slog.LevelDebug)
	if len(debug) != 2 {
		t.Fatalf("%d Debug records, want one per failed delivery (2): %v", len(debug), debug)
	}
	for _, rec := range debug {
		for _, k := range []string{"topic", "id", "attempt", "error"} {
			if rec[k] == "" {
				t.Errorf("Debug record %v lacks %s", rec, k)
			}
		}
	}
	warn := logs.at(slog.LevelWarn)[0]
	want := map[string]string{"topic": "logs", "id": "1", "attempts": "2", "reason": "boom", "dead_letter_topic": "logs.dead"}
	for k, v := range want {
		if warn[k] != v {
			t.Errorf("dead-letter Warn record has %s=%q, want %q (record %v)", k, warn[k], v, warn)
		}
	}
	if errs := logs.at(slog.LevelError); len(errs) != 0 {
		t.Errorf("Error records %v, want none", errs)
	}
}

func TestInvalidInput(t *testing.T) {
	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{name: "nil hub", run: func() error { _, err := NewBroker(WithHub(nil)); return err }, want: relay.ErrInvalidOption},
		{name: "zero capacity", run: func() error { _, err := NewHub(WithCapacity(0)); return err }, want: relay.ErrInvalidOption},
		{name: "negative capacity", run: func() error { _, err := NewHub(WithCapacity(-1)); return err }, want: relay.ErrInvalidOption},
		{name: "nil hub option", run: func() error { _, err := NewHub(nil, WithCapacity(1)); return err }, want: relay.ErrInvalidOption},
		{name: "nil option", run: func() error { _, err := NewBroker(WithGroup("g"), nil); return err }, want: relay.ErrInvalidOption},
		{name: "nil option to publisher", run: func() error { _, err := NewPublisher(testHub(t), nil); return err }, want: relay.ErrInvalidOption},
		{name: "nil option to subscriber", run: func() error { _, err := NewSubscriber(testHub(t), nil); return err }, want: relay.ErrInvalidOption},
		{name: "concurrency over the bound", run: func() error { _, err := NewBroker(WithConcurrency(relay.MaxConcurrency + 1)); return err }, want: relay.ErrInvalidOption},
		{name: "concurrency of max int", run: func() error { _, err := NewBroker(WithConcurrency(math.MaxInt)); return err }, want: relay.ErrInvalidOption},
		{name: "concurrency at the bound", run: func() error { _, err := NewBroker(WithConcurrency(relay.MaxConcurrency)); return err }, want: nil},
		{name: "min backoff of 1ns, a busy loop", run: func() error { _, err := NewBroker(WithBackoff(time.Nanosecond, time.Second)); return err }, want: relay.ErrInvalidOption},
		{name: "backoff up to max duration", run: func() error { _, err := NewBroker(WithBackoff(100*time.Millisecond, math.MaxInt64)); return err }, want: nil},
		{name: "capacity of max int", run: func() error { _, err := NewHub(WithCapacity(math.MaxInt)); return err }, want: nil},
		{name: "empty group", run: func() error { _, err := NewBroker(WithGroup("")); return err }, want: relay.ErrInvalidOption},
		{name: "zero concurrency", run: func() error { _, err := NewBroker(WithConcurrency(0)); return err }, want: relay.ErrInvalidOption},
		{name: "zero max deliver", run: func() error { _, err := NewBroker(WithMaxDeliver(0)); return err }, want: relay.ErrInvalidOption},
		{name: "negative max deliver", run: func() error { _, err := NewBroker(WithMaxDeliver(-1)); return err }, want: relay.ErrInvalidOption},
		{name: "zero backoff", run: func() error { _, err := NewBroker(WithBackoff(0, 0)); return err }, want: relay.ErrInvalidOption},
		{name: "inverted backoff", run: func() error { _, err := NewBroker(WithBackoff(time.Second, time.Millisecond)); return err }, want: relay.ErrInvalidOption},
		{name: "nil dead-letter func", run: func() error { _, err := NewBroker(WithDeadLetterTopic(nil)); return err }, want: relay.ErrInvalidOption},
		{name: "nil logger", run: func() error { _, err := NewBroker(WithLogger(nil)); return err }, want: relay.ErrInvalidOption},
		{name: "nil tracer provider", run: func() error { _, err := NewBroker(WithTracerProvider(nil)); return err }, want: relay.ErrInvalidOption},
		{name: "nil meter provider", run: func() error { _, err := NewPublisher(testHub(t), WithMeterProvider(nil)); return err }, want: relay.ErrInvalidOption},
		{name: "nil propagators", run: func() error { _, err := NewSubscriber(testHub(t), WithPropagators(nil)); return err }, want: relay.ErrInvalidOption},
		{name: "publisher nil hub", run: func() error { _, err := NewPublisher(nil); return err }, want: relay.ErrInvalidOption},
		{name: "subscriber nil hub", run: func() error { _, err := NewSubscriber(nil); return err }, want: relay.ErrInvalidOption},
		{name: "subscriber other hub", run: func() error { _, err := NewSubscriber(testHub(t), WithHub(testHub(t))); return err }, want: relay.ErrInvalidOption},
		{name: "invalid topic", run: func() error {
			b, _ := NewBroker()
			defer b.Close()
			return b.Publish(context.Background(), "a..b", nil)
		}, want: relay.ErrInvalidTopic},
		{name: "invalid dead-letter topic", run: func() error {
			b, _ := NewBroker()
			defer b.Close()
			return b.Subscribe(strings.Repeat("a", relay.MaxTopicLength), func([]byte) error { return nil })
		}, want: relay.ErrInvalidTopic},
		{name: "nil handler", run: func() error {
			b, _ := NewBroker()
			defer b.Close()
			return b.Subscribe("a", nil)
		}, want: relay.ErrNilHandler},
		{name: "canceled context", run: func() error {
			b, _ := NewBroker()
			defer b.Close()
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return b.Publish(ctx, "a", nil)
		}, want: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want an error wrapping %v", err, tt.want)
			}
		})
	}
}
