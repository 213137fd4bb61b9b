package relay

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
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

// referenceTopicProblem is topicProblem as it was before its single-pass
// rewrite (issue 11): the Unicode tables for every rune and a split on '.'.
// The rewrite must give the same reason for every topic.
func referenceTopicProblem(topic string) string {
	switch {
	case topic == "":
		return "empty"
	case len(topic) > MaxTopicLength:
		return fmt.Sprintf("longer than %d bytes", MaxTopicLength)
	case !utf8.ValidString(topic):
		return "not valid UTF-8"
	case strings.HasPrefix(topic, "$"):
		return "starts with '$', which NATS reserves"
	}
	for _, r := range topic {
		switch {
		case unicode.IsSpace(r) || unicode.Is(unicode.Z, r):
			return "contains white space"
		case unicode.IsControl(r):
			return "contains a control character"
		case r == '*' || r == '>':
			return "contains a wildcard ('*' or '>')"
		}
	}
	for _, token := range strings.Split(topic, ".") {
		if token == "" {
			return "has an empty token (leading, trailing or double '.')"
		}
	}
	return ""
}

var topicProblemSeeds = []string{
	"orders", "orders.placed", "a.b.c", "Orders-EU_2", "café.commandes", "", ".", "..", "a..b", ".a", "a.",
	"$JS.API", "a.*", "a.>", "*", ">", "a b", "a\tb", "a\nb", "a\vb", "a\fb", "a\rb", "a\x00b", "a\x1fb",
	"a\x7fb", "a\u0085b", "a\u00a0b", "a\u2028b", "a\u3000b", "a\u200bb", "\xff", "a.\xc3", "é.", ".é",
	"a. b", "a..*", "a.\x01.", strings.Repeat("x", MaxTopicLength), strings.Repeat("x", MaxTopicLength+1),
	strings.Repeat("é", MaxTopicLength/2) + ".",
}

func TestTopicProblemMatchesReference(t *testing.T) {
	for _, topic := range topicProblemSeeds {
		if got, want := topicProblem(topic), referenceTopicProblem(topic); got != want {
			t.Errorf("topicProblem(%q) = %q, want %q", topic, got, want)
		}
	}
	for r := rune(0); r <= 0x3000; r++ { // every rune of the first planes, alone and inside a topic
		for _, topic := range []string{string(r), "a" + string(r) + ".b", "a." + string(r)} {
			if got, want := topicProblem(topic), referenceTopicProblem(topic); got != want {
				t.Fatalf("topicProblem(%q) = %q, want %q", topic, got, want)
			}
		}
	}
}

// FuzzTopicProblemMatchesReference checks the single-pass topicProblem
// against referenceTopicProblem on any input. Run it with
//
//	go test -run '^$' -fuzz FuzzTopicProblemMatchesReference -fuzztime 30s .
func FuzzTopicProblemMatchesReference(f *testing.F) {
	for _, seed := range topicProblemSeeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		if got, want := topicProblem(topic), referenceTopicProblem(topic); got != want {
			t.Fatalf("topicProblem(%q) = %q, want %q", topic, got, want)
		}
	})
}

// BenchmarkTopicProblem compares topicProblem with the reference it replaced,
// on a typical topic.
func BenchmarkTopicProblem(b *testing.B) {
	for _, bc := range []struct {
		name string
		fn   func(string) string
	}{{"single-pass", topicProblem}, {"reference", referenceTopicProblem}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if p := bc.fn("orders.eu-west.placed_v2"); p != "" {
					b.Fatal(p)
				}
			}
		})
	}
}
