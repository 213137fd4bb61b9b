package relay_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/go-relay/relay"
)

func TestDeadLetterFilterMatch(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	dl := relay.DeadLetter{Topic: "orders.dead", ID: "7", Time: now.Add(-time.Hour), SourceTopic: "orders", Reason: "card declined"}
	cases := []struct {
		name string
		f    relay.DeadLetterFilter
		want bool
	}{
		{"zero filter", relay.DeadLetterFilter{}, true},
		{"reason matches", relay.DeadLetterFilter{Reason: regexp.MustCompile(`declined$`)}, true},
		{"reason does not match", relay.DeadLetterFilter{Reason: regexp.MustCompile(`timeout`)}, false},
		{"older than 30m", relay.DeadLetterFilter{OlderThan: 30 * time.Minute}, true},
		{"older than 2h", relay.DeadLetterFilter{OlderThan: 2 * time.Hour}, false},
		{"same source topic", relay.DeadLetterFilter{SourceTopic: "orders"}, true},
		{"other source topic", relay.DeadLetterFilter{SourceTopic: "payments"}, false},
		{"id listed", relay.DeadLetterFilter{IDs: []string{"3", "7"}}, true},
		{"id not listed", relay.DeadLetterFilter{IDs: []string{"3"}}, false},
	}
	for _, c := range cases {
		if got := c.f.Match(dl, now); got != c.want {
			t.Errorf("%s: Match = %v, want %v", c.name, got, c.want)
		}
	}
	if (relay.DeadLetterFilter{OlderThan: time.Minute}).Match(relay.DeadLetter{}, now) {
		t.Error("a dead letter of unknown time matched OlderThan")
	}
}
