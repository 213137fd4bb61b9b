package relay

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateTopic(t *testing.T) {
	tests := []struct {
		name  string
		topic string
		valid bool
	}{
		{name: "simple", topic: "orders", valid: true},
		{name: "dotted", topic: "orders.placed.eu", valid: true},
		{name: "dash and underscore", topic: "Orders-EU_2", valid: true},
		{name: "non-ASCII", topic: "café.commandes", valid: true},
		{name: "max length", topic: strings.Repeat("a", MaxTopicLength), valid: true},
		{name: "empty", topic: ""},
		{name: "too long", topic: strings.Repeat("a", MaxTopicLength+1)},
		{name: "space", topic: "orders placed"},
		{name: "tab", topic: "orders\tplaced"},
		{name: "newline", topic: "orders\n"},
		{name: "no-break space", topic: "orders\u00a0placed"},
		{name: "control character", topic: "orders\x00"},
		{name: "star wildcard", topic: "orders.*"},
		{name: "full wildcard", topic: "orders.>"},
		{name: "star inside token", topic: "ord*ers"},
		{name: "leading dot", topic: ".orders"},
		{name: "trailing dot", topic: "orders."},
		{name: "double dot", topic: "orders..placed"},
		{name: "only a dot", topic: "."},
		{name: "reserved dollar", topic: "$JS.API"},
		{name: "invalid UTF-8", topic: "orders\xff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateTopic(tt.topic)
			if tt.valid {
				if err != nil {
					t.Fatalf("ValidateTopic(%q) = %v, want nil", tt.topic, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidTopic) {
				t.Fatalf("ValidateTopic(%q) = %v, want an error wrapping ErrInvalidTopic", tt.topic, err)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("bad order")
	err := Permanent(base)
	if !errors.Is(err, ErrPermanent) || !errors.Is(err, base) {
		t.Fatalf("Permanent(%v) = %v: want it to match both ErrPermanent and the cause", base, err)
	}
	if err.Error() != "bad order" {
		t.Fatalf("Permanent changed the message: %q", err.Error())
	}
	if Permanent(nil) != nil {
		t.Fatal("Permanent(nil) != nil")
	}
}
