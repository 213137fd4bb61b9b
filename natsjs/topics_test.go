package natsjs

import (
	"strings"
	"testing"
)

func TestStreamName(t *testing.T) {
	long := strings.Repeat("a", 200)
	cases := []struct {
		name, topic string
		kept        bool
	}{
		{"plain name is kept", "orders", true},
		{"dashes and underscores are kept", "Orders-EU_2", true},
		{"dots are rewritten", "orders.eu", false},
		{"non-ASCII is rewritten", "café.commandes", false},
		{"over the length limit is rewritten", long, false},
		{"a name that looks rewritten is rewritten", "orders_0123456789abcdef", false},
		{"upper-case hex does not look rewritten", "orders_0123456789ABCDEF", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := StreamName(c.topic)
			if (got == c.topic) != c.kept {
				t.Errorf("StreamName(%q) = %q, kept = %v, want kept = %v", c.topic, got, got == c.topic, c.kept)
			}
			if len(got) > MaxNameLength || strings.ContainsAny(got, ".*> \t\r\n/\\") {
				t.Errorf("StreamName(%q) = %q: not a valid short JetStream name", c.topic, got)
			}
		})
	}
}

func TestStreamNamesDoNotCollide(t *testing.T) {
	// Topics that the seed's rule (sanitize, then 8 hex digits only when
	// something changed) could map to one name, or that differ only in bytes
	// that sanitizing erases.
	topics := []string{"a.b", "a_b", "a-b", "a.b.c", "a_b.c", "a.b_c", "a_b_c"}
	topics = append(topics, StreamName("a.b")) // a topic that is another topic's stream name
	topics = append(topics, strings.Repeat("x", 100)+".1", strings.Repeat("x", 100)+".2")
	seen := make(map[string]string)
	for _, topic := range topics {
		name := StreamName(topic)
		if other, ok := seen[name]; ok {
			t.Errorf("topics %q and %q share stream name %q", other, topic, name)
		}
		seen[name] = topic
	}
}
