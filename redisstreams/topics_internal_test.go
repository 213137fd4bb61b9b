package redisstreams

import (
	"errors"
	"sync"
	"testing"

	"github.com/go-relay/relay"
)

// validTopic remembers only a topic it accepted: a topic the rule refuses is
// refused every time, whatever was published before it, and from many
// publishers at once.
func TestValidTopicRemembersOnlyWhatItAccepted(t *testing.T) {
	e := &engine{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				for _, tc := range []struct {
					topic string
					ok    bool
				}{
					{"orders", true}, {"orders", true}, {"orders.", false}, {"orders", true},
					{"orders.placed", true}, {"", false}, {"orders placed", false}, {"orders.*", false},
				} {
					err := e.validTopic(tc.topic)
					if tc.ok != (err == nil) || (err != nil && !errors.Is(err, relay.ErrInvalidTopic)) {
						t.Errorf("validTopic(%q) = %v, want valid: %v", tc.topic, err, tc.ok)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
