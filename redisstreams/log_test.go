package redisstreams_test

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-relay/relay/redisstreams"
)

// Log levels match the other backends: a failed delivery that is retried is
// Debug; a dead letter is Warn with its topic, id, attempts, reason and
// dead-letter topic.
func TestLogLevelsOfFailuresAndDeadLetters(t *testing.T) {
	e := newEnv(t)
	topic := e.topic("logs")
	logs := &logRecorder{}
	b := broker(t, e.rc, fast(redisstreams.WithLogger(slog.New(logs)), redisstreams.WithMaxDeliver(2))...)
	var calls atomic.Int32
	if err := b.Subscribe(topic, func([]byte) error {
		calls.Add(1)
		return errors.New("boom")
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, "m")
	eventually(t, 10*time.Second, "no dead letter", func() bool { return xlen(t, e.rc, topic+".dead") == 1 })
	eventually(t, 5*time.Second, "no dead-letter log", func() bool {
		_, ok := logs.find(slog.LevelWarn, "dead-letter")
		return ok
	})
	if attrs, ok := logs.find(slog.LevelDebug, "handler failed"); !ok {
		t.Error("no Debug record of the failed delivery")
	} else if attrs["attempt"] != "1" || attrs["error"] != "boom" {
		t.Errorf("failed delivery logged with %v", attrs)
	}
	attrs, _ := logs.find(slog.LevelWarn, "dead-letter")
	for _, k := range []string{"topic", "id", "attempts", "reason", "dead_letter_topic"} {
		if attrs[k] == "" {
			t.Errorf("dead-letter record lacks %q: %v", k, attrs)
		}
	}
	if attrs["attempts"] != "2" || attrs["dead_letter_topic"] != topic+".dead" || attrs["topic"] != topic {
		t.Errorf("dead-letter record %v", attrs)
	}
}
