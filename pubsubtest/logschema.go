package pubsubtest

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// logRecord is one record a backend logged, its attributes as strings.
type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

// logCapture is a slog.Handler that keeps every record, with the
// attributes of With as well.
type logCapture struct {
	mu      *sync.Mutex
	records *[]logRecord
	with    []slog.Attr
}

func newLogCapture() *logCapture {
	return &logCapture{mu: new(sync.Mutex), records: new([]logRecord)}
}

// Enabled implements slog.Handler: every level is kept.
func (h *logCapture) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler: it keeps r with the attributes of With.
func (h *logCapture) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: make(map[string]string)}
	for _, a := range h.with {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	*h.records = append(*h.records, rec)
	h.mu.Unlock()
	return nil
}

// WithAttrs implements slog.Handler: the handler it returns shares the
// records and adds attrs to each.
func (h *logCapture) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logCapture{mu: h.mu, records: h.records, with: append(append([]slog.Attr(nil), h.with...), attrs...)}
}

// WithGroup implements slog.Handler; groups are ignored (the schema has none).
func (h *logCapture) WithGroup(string) slog.Handler { return h }

// find returns the first record at level whose message ends with suffix.
func (h *logCapture) find(level slog.Level, suffix string) (logRecord, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range *h.records {
		if r.level == level && strings.HasSuffix(r.msg, suffix) {
			return r, true
		}
	}
	return logRecord{}, false
}

func (h *logCapture) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(*h.records)
}

// The records an operator's alerts and queries rely on: the same message
// (after the backend's name) at the same level with the same keys on every
// backend. Drift here went unnoticed before: one backend logged "err" and
// "pkg" where the others logged "error" and "backend".
var logSchema = []struct {
	level  slog.Level
	suffix string
	keys   []string
}{
	{slog.LevelDebug, ": handler failed", []string{"backend", "group", "topic", "id", "attempt", "error"}},
	{slog.LevelWarn, ": message dead-lettered", []string{"backend", "group", "topic", "id", "attempts", "reason", "dead_letter_topic"}},
	{slog.LevelError, ": settle failed; the message stays pending", []string{"backend", "group", "topic", "id", "attempt", "error"}},
}

// testLogSchema checks the records of a failed delivery and of a dead
// letter: message, level and attribute keys, and the values it knows.
func (s *byteSuite) testLogSchema(t *testing.T) {
	logs := newLogCapture()
	cfg := DefaultConfig()
	cfg.MaxDeliver = 2
	cfg.Logger = slog.New(logs)
	topic := NewTopic(t)
	in := newInbox()
	subscribe(t, s.broker(t, cfg), topic, in.handler(func([]byte) error { return errInduced }))
	publish(t, s.broker(t, DefaultConfig()), topic, []byte("logged"))
	in.waitDistinct(t, 1, waitShort, "failing handler")
	found := func() bool {
		_, ok := logs.find(slog.LevelWarn, logSchema[1].suffix)
		return ok
	}
	if !poll(waitShort, found) {
		if logs.len() == 0 {
			t.Skip("the harness does not pass Config.Logger to the backend: the log records cannot be checked")
		}
		t.Fatalf("no Warn record ending %q within %v", logSchema[1].suffix, waitShort)
	}
	for _, want := range logSchema[:2] {
		r, ok := logs.find(want.level, want.suffix)
		if !ok {
			t.Errorf("no %v record ending %q", want.level, want.suffix)
			continue
		}
		for _, k := range want.keys {
			if r.attrs[k] == "" {
				t.Errorf("record %q lacks the key %q: %v", r.msg, k, r.attrs)
			}
		}
		if !strings.HasPrefix(r.msg, r.attrs["backend"]+":") {
			t.Errorf("record %q does not start with its backend %q", r.msg, r.attrs["backend"])
		}
		if r.attrs["topic"] != topic || r.attrs["group"] != cfg.Group {
			t.Errorf("record %q has topic %q and group %q, want %q and %q", r.msg, r.attrs["topic"], r.attrs["group"], topic, cfg.Group)
		}
	}
	if r, ok := logs.find(slog.LevelDebug, logSchema[0].suffix); ok && (r.attrs["attempt"] != "1" || r.attrs["error"] != errInduced.Error()) {
		t.Errorf("failed-handler record %v, want attempt 1 and error %q", r.attrs, errInduced)
	}
	if r, ok := logs.find(slog.LevelWarn, logSchema[1].suffix); ok && (r.attrs["attempts"] != "2" || r.attrs["dead_letter_topic"] != topic+".dead") {
		t.Errorf("dead-letter record %v, want attempts 2 and dead_letter_topic %q", r.attrs, topic+".dead")
	}
}

// testLogSettleFailed checks the record of a delivery that could not be
// settled, the one an operator alerts on. The portable way to make a settle
// fail is a dead letter that cannot be written: Config.DeadLetterTopic
// names a valid topic while Subscribe checks it and an invalid one when the
// message is dead-lettered (a function that changes its mind, as one
// reading its mapping from a reloaded configuration may). The record must
// have the shared keys, and the message must stay pending: it is delivered
// again.
func (s *byteSuite) testLogSettleFailed(t *testing.T) {
	s.needDeadLetterTopic(t)
	logs := newLogCapture()
	cfg := DefaultConfig()
	cfg.MaxDeliver = 1
	cfg.Logger = slog.New(logs)
	topic, dlTopic := NewTopic(t), NewTopic(t)
	var subscribed atomic.Bool
	cfg.DeadLetterTopic = func(string) string {
		if subscribed.Load() {
			return invalidDeadLetterTopic
		}
		return dlTopic
	}
	in := newInbox()
	subscribe(t, s.broker(t, cfg), topic, in.handler(func([]byte) error { return errInduced }))
	subscribed.Store(true)
	publish(t, s.broker(t, DefaultConfig()), topic, []byte("unsettled"))
	want := logSchema[2]
	found := func() bool { _, ok := logs.find(want.level, want.suffix); return ok }
	// A redelivery with nothing logged shows soon that the harness keeps
	// the backend's logger.
	unlogged := func() bool { return in.len() >= 2 && logs.len() == 0 }
	if !poll(waitShort, func() bool { return found() || unlogged() }) || !found() {
		if logs.len() == 0 {
			t.Skip("the harness does not pass Config.Logger to the backend: the log records cannot be checked")
		}
		t.Fatalf("no %v record ending %q within %v of a dead letter to %q", want.level, want.suffix, waitShort, invalidDeadLetterTopic)
	}
	r, _ := logs.find(want.level, want.suffix)
	for _, k := range want.keys {
		if r.attrs[k] == "" {
			t.Errorf("record %q lacks the key %q: %v", r.msg, k, r.attrs)
		}
	}
	if !strings.HasPrefix(r.msg, r.attrs["backend"]+":") {
		t.Errorf("record %q does not start with its backend %q", r.msg, r.attrs["backend"])
	}
	if r.attrs["topic"] != topic || r.attrs["group"] != cfg.Group || r.attrs["attempt"] != "1" {
		t.Errorf("record %q has topic %q, group %q and attempt %q, want %q, %q and 1",
			r.msg, r.attrs["topic"], r.attrs["group"], r.attrs["attempt"], topic, cfg.Group)
	}
	eventually(t, waitShort, func() bool { return in.counts()["unsettled"] >= 2 },
		"the message whose dead letter failed was delivered %d times, want it pending and delivered again", in.counts()["unsettled"])
}
