package pubsubtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-relay/relay"
)

// These tests feed the suite's verdicts the evidence a broken backend would
// produce and require a failure naming the defect, so a suite that passes
// everything would be caught here. suite_test.go does the same end to end,
// running whole sub-tests against deliberately broken brokers.

func TestCheckExactlyOnce(t *testing.T) {
	want := []string{"a", "b", "c"}
	cases := []struct {
		name    string
		got     map[string]int
		wantErr string // "" = must pass
	}{
		{"all once", map[string]int{"a": 1, "b": 1, "c": 1}, ""},
		{"one lost", map[string]int{"a": 1, "c": 1}, "never delivered"},
		{"one duplicated", map[string]int{"a": 1, "b": 2, "c": 1}, "more than once"},
		{"one foreign", map[string]int{"a": 1, "b": 1, "c": 1, "x": 1}, "unexpected"},
		{"nothing", map[string]int{}, "3 of 3 messages never delivered"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assertVerdict(t, checkExactlyOnce(c.got, want), c.wantErr)
		})
	}
}

func TestCheckAtLeastOnce(t *testing.T) {
	want := []string{"a", "b"}
	cases := []struct {
		name    string
		got     map[string]int
		wantErr string
	}{
		{"all once", map[string]int{"a": 1, "b": 1}, ""},
		{"duplicates are allowed", map[string]int{"a": 3, "b": 1}, ""},
		{"one lost", map[string]int{"a": 2}, "never delivered"},
		{"one foreign", map[string]int{"a": 1, "b": 1, "z": 1}, "unexpected"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assertVerdict(t, checkAtLeastOnce(c.got, want), c.wantErr)
		})
	}
}

func TestCheckCompeting(t *testing.T) {
	want := []string{"a", "b", "c", "d"}
	cases := []struct {
		name    string
		shares  []map[string]int
		wantErr string
	}{
		{"split", []map[string]int{{"a": 1, "b": 1}, {"c": 1, "d": 1}}, ""},
		{"one consumer idle", []map[string]int{{"a": 1, "b": 1, "c": 1, "d": 1}, {}}, "consumer 2 of 2 received nothing"},
		{"both got one message", []map[string]int{{"a": 1, "b": 1, "c": 1}, {"c": 1, "d": 1}}, "more than once"},
		{"fan-out inside the group", []map[string]int{{"a": 1, "b": 1, "c": 1, "d": 1}, {"a": 1, "b": 1, "c": 1, "d": 1}}, "more than once"},
		{"one lost", []map[string]int{{"a": 1}, {"b": 1, "c": 1}}, "never delivered"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assertVerdict(t, checkCompeting(c.shares, want), c.wantErr)
		})
	}
}

func TestCheckOrder(t *testing.T) {
	cases := []struct {
		name    string
		got     []string
		wantErr string
	}{
		{"in order", []string{"1", "2", "3"}, ""},
		{"swapped", []string{"1", "3", "2"}, "message 1 is \"3\""},
		{"short", []string{"1", "2"}, "received 2 messages, want 3"},
		{"redelivered at the end", []string{"1", "2", "3", "2"}, "received 4 messages"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assertVerdict(t, checkOrder(c.got, []string{"1", "2", "3"}), c.wantErr)
		})
	}
}

func TestCheckBackoff(t *testing.T) {
	t0 := time.Unix(0, 0)
	cases := []struct {
		name    string
		times   []time.Time
		wantErr string
	}{
		{"spaced", []time.Time{t0, t0.Add(15 * time.Millisecond), t0.Add(60 * time.Millisecond)}, ""},
		{"one delivery", []time.Time{t0}, ""},
		{"hot loop", []time.Time{t0, t0.Add(time.Millisecond)}, "delivery 2 came 1ms after delivery 1"},
		{"second gap too short", []time.Time{t0, t0.Add(20 * time.Millisecond), t0.Add(21 * time.Millisecond)}, "delivery 3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assertVerdict(t, checkBackoff(c.times, 10*time.Millisecond), c.wantErr)
		})
	}
}

func TestCheckDeliveries(t *testing.T) {
	assertVerdict(t, checkDeliveries(3, 3), "")
	assertVerdict(t, checkDeliveries(4, 3), "delivered 4 times, want exactly 3")
	assertVerdict(t, checkDeliveries(1, 3), "delivered 1 times")
}

func TestCheckPayload(t *testing.T) {
	cases := []struct {
		name      string
		got, want []byte
		wantErr   string
	}{
		{"equal", []byte{0, 0xff}, []byte{0, 0xff}, ""},
		{"nil equals empty", nil, []byte{}, ""},
		{"truncated", []byte{1}, []byte{1, 2}, "has 1 bytes, want 2"},
		{"mangled byte", []byte{1, 0xfd}, []byte{1, 0xff}, "byte 1 is 0xfd, want 0xff"},
		{"UTF-8 repaired", []byte("\uFFFD"), []byte{0xff}, "has 3 bytes, want 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assertVerdict(t, checkPayload(c.got, c.want), c.wantErr)
		})
	}
}

func TestCheckDeadLetterMetadata(t *testing.T) {
	good := map[string]string{
		relay.MetadataSourceTopic: "orders",
		relay.MetadataAttempts:    "3",
		relay.MetadataReason:      "boom",
		relay.MetadataSourceID:    "17",
		"trace_id":                "t-1",
	}
	without := func(k string) map[string]string {
		md := make(map[string]string, len(good))
		for key, v := range good {
			if key != k {
				md[key] = v
			}
		}
		return md
	}
	with := func(k, v string) map[string]string {
		md := without("")
		md[k] = v
		return md
	}
	orig := map[string]string{"trace_id": "t-1"}
	cases := []struct {
		name    string
		md      map[string]string
		wantErr string
	}{
		{"complete", good, ""},
		{"no source topic", without(relay.MetadataSourceTopic), relay.MetadataSourceTopic},
		{"wrong source topic", with(relay.MetadataSourceTopic, "orders.dead"), "want the source topic"},
		{"wrong attempts", with(relay.MetadataAttempts, "4"), relay.MetadataAttempts},
		{"no reason", without(relay.MetadataReason), relay.MetadataReason},
		{"no source id", without(relay.MetadataSourceID), relay.MetadataSourceID},
		{"source metadata dropped", without("trace_id"), `"trace_id"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assertVerdict(t, checkDeadLetterMetadata(c.md, orig, "orders", 3), c.wantErr)
		})
	}
}

func TestCheckErrorIs(t *testing.T) {
	assertVerdict(t, checkErrorIs("Publish", fmt.Errorf("x: %w", relay.ErrClosed), relay.ErrClosed), "")
	assertVerdict(t, checkErrorIs("Publish", nil, relay.ErrClosed), "returned <nil>")
	// A message that merely looks right is not enough: it must match errors.Is.
	assertVerdict(t, checkErrorIs("Publish", errors.New(relay.ErrClosed.Error()), relay.ErrClosed), "want an error matching")
	assertVerdict(t, checkErrorIs("Publish", fmt.Errorf("x: %v", context.Canceled), context.Canceled), "want an error matching")
}

func TestNewTopicIsValidAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		topic := NewTopic(t)
		if err := relay.ValidateTopic(topic + ".dead"); err != nil {
			t.Fatal(err)
		}
		if seen[topic] {
			t.Fatalf("topic %q made twice", topic)
		}
		seen[topic] = true
	}
	t.Run("a very long name / with slashes and spaces "+strings.Repeat("x", 300), func(t *testing.T) {
		topic := NewTopic(t)
		if err := relay.ValidateTopic(topic + ".dead"); err != nil {
			t.Fatal(err)
		}
		if len(topic) > 100 {
			t.Errorf("topic %q is %d bytes, want at most 100", topic, len(topic))
		}
	})
}

// assertVerdict fails t unless err is nil when wantErr is empty, and otherwise
// an error whose text contains wantErr.
func assertVerdict(t *testing.T, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Errorf("verdict failed a conforming result: %v", err)
	case wantErr != "" && err == nil:
		t.Errorf("verdict passed a broken result, want an error containing %q", wantErr)
	case wantErr != "" && !strings.Contains(err.Error(), wantErr):
		t.Errorf("verdict error %q does not contain %q", err, wantErr)
	}
}
