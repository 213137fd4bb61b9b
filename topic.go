package relay

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxTopicLength is the longest topic, in bytes, that [ValidateTopic] accepts.
const MaxTopicLength = 255

// ValidateTopic reports whether topic follows the one topic rule that every relay
// backend applies, so that a topic valid on one backend is valid on all of them.
// A valid topic:
//
//   - is 1 to [MaxTopicLength] (255) bytes long and valid UTF-8;
//   - contains no white space and no control characters (Unicode categories Z
//     and Cc), since NATS subjects end at white space;
//   - contains neither '*' nor '>', the NATS wildcards, since a topic names
//     exactly one stream;
//   - is a sequence of non-empty tokens separated by '.': it neither starts nor
//     ends with '.', and has no "..";
//   - does not start with '$', which NATS reserves for its own subjects
//     ($JS, $SYS, $KV).
//
// Any other byte is allowed: "orders", "orders.placed", "Orders-EU_2",
// "café.commandes". It returns nil for a valid topic, and otherwise an error
// that wraps [ErrInvalidTopic] and names the rule broken.
func ValidateTopic(topic string) error {
	if reason := topicProblem(topic); reason != "" {
		return fmt.Errorf("%w %q: %s", ErrInvalidTopic, topic, reason)
	}
	return nil
}

func topicProblem(topic string) string {
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
	// One pass over the bytes: ASCII, nearly every topic, is judged without
	// the Unicode tables; a rune beyond it by them. A rune's problem is
	// reported before an empty token, wherever each is.
	dot, empty := true, false // dot: the previous byte ends a token (or there is none)
	for i := 0; i < len(topic); {
		c := topic[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(topic[i:])
			switch {
			case unicode.IsSpace(r) || unicode.Is(unicode.Z, r):
				return "contains white space"
			case unicode.IsControl(r):
				return "contains a control character"
			}
			dot = false
			i += size
			continue
		}
		switch {
		case c == ' ' || c >= '\t' && c <= '\r':
			return "contains white space"
		case c < 0x20 || c == 0x7f:
			return "contains a control character"
		case c == '*' || c == '>':
			return "contains a wildcard ('*' or '>')"
		case c == '.':
			empty = empty || dot
			dot = true
		default:
			dot = false
		}
		i++
	}
	if empty || dot {
		return "has an empty token (leading, trailing or double '.')"
	}
	return ""
}
