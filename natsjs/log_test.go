package natsjs_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/testkit"

	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// A handler failure that will be retried logs at Debug; a dead letter at
// Warn with its details.
func TestLogLevels(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "logged")
	var out testkit.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := newBroker(t, js, natsjs.WithLogger(log), natsjs.WithMaxDeliver(2), natsjs.WithBackoff(10*time.Millisecond, 20*time.Millisecond))
	if err := b.Subscribe(topic, func([]byte) error { return errors.New("boom") }); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, []byte("x"))
	eventually(t, func() bool { return strings.Contains(out.String(), "dead-lettered") }, "dead letter logged")
	var debug, warn string
	for line := range strings.Lines(out.String()) {
		switch {
		case strings.Contains(line, "handler failed"):
			debug = line
		case strings.Contains(line, "dead-lettered"):
			warn = line
		}
	}
	if !strings.Contains(debug, "level=DEBUG") || !strings.Contains(debug, "boom") {
		t.Errorf("handler failure logged as %q, want Debug with the error", debug)
	}
	for _, want := range []string{"level=WARN", "topic=" + topic, "id=1", "attempts=2", "reason=boom", "dead_letter_topic=" + topic + ".dead"} {
		if !strings.Contains(warn, want) {
			t.Errorf("dead letter logged as %q, want %q in it", warn, want)
		}
	}
}
