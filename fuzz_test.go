package relay

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzValidateTopic checks that ValidateTopic never panics, that it refuses
// with an error wrapping ErrInvalidTopic, and that every topic it accepts
// keeps each promise of its documentation (so that it is a valid NATS
// subject and Redis key). Run it with
//
//	go test -run '^$' -fuzz FuzzValidateTopic -fuzztime 60s .
func FuzzValidateTopic(f *testing.F) {
	for _, seed := range []string{
		"orders", "orders.placed", "Orders-EU_2", "café.commandes", "a.b_c-d",
		"", ".", "a..b", ".a", "a.", "$JS.API", "a.*", "a.>", "a b", "a\tb",
		"a\u00a0b", "a\u2028b", "a\x00b", "\xff", "a\u200bb", strings.Repeat("x", MaxTopicLength),
		strings.Repeat("x", MaxTopicLength+1),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		err := ValidateTopic(topic)
		if err != nil {
			if !errors.Is(err, ErrInvalidTopic) {
				t.Fatalf("ValidateTopic(%q) = %v, which does not wrap ErrInvalidTopic", topic, err)
			}
			return
		}
		if problem := fuzzTopicProblem(topic); problem != "" {
			t.Fatalf("ValidateTopic(%q) = nil, but the topic %s", topic, problem)
		}
	})
}

// fuzzTopicProblem restates the documented topic rule independently of
// topicProblem, plus what NATS needs of a subject.
func fuzzTopicProblem(topic string) string {
	switch {
	case len(topic) == 0 || len(topic) > MaxTopicLength:
		return "has a length outside 1..MaxTopicLength"
	case !utf8.ValidString(topic):
		return "is not valid UTF-8"
	case topic[0] == '$':
		return "starts with '$'"
	case strings.ContainsAny(topic, "*>"):
		return "holds a wildcard"
	case strings.ContainsAny(topic, " \t\r\n\f\v\x00"):
		return "holds a byte that ends a NATS subject"
	case topic[0] == '.' || topic[len(topic)-1] == '.' || strings.Contains(topic, ".."):
		return "has an empty token"
	}
	for _, r := range topic {
		if unicode.IsSpace(r) || unicode.Is(unicode.Z, r) || unicode.IsControl(r) {
			return "holds white space or a control character"
		}
	}
	return ""
}
