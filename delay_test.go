package relay_test

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
)

func TestRetryAfterWrapsItsError(t *testing.T) {
	if relay.RetryAfter(nil, time.Second) != nil {
		t.Error("RetryAfter(nil, 1s) is not nil")
	}
	err := fmt.Errorf("fetch: %w", relay.RetryAfter(io.ErrUnexpectedEOF, 2*time.Second))
	if !errors.Is(err, io.ErrUnexpectedEOF) || err.Error() != "fetch: unexpected EOF" {
		t.Errorf("RetryAfter changed its error: %v", err)
	}
	if d, ok := relay.RetryAfterDelay(err); !ok || d != 2*time.Second {
		t.Errorf("RetryAfterDelay = %v, %v; want 2s, true", d, ok)
	}
	if _, ok := relay.RetryAfterDelay(io.EOF); ok {
		t.Error("RetryAfterDelay found a wait in a plain error")
	}
}

func TestNackReasonRecordsRetryAfter(t *testing.T) {
	msg := message.NewMessage("u", nil)
	h := relay.NackReason(func(*message.Message) ([]*message.Message, error) {
		return nil, relay.RetryAfter(errors.New("429"), 1500*time.Millisecond)
	})
	if _, err := h(msg); err == nil {
		t.Fatal("NackReason swallowed the error")
	}
	if got := msg.Metadata.Get(relay.MetadataRetryAfter); got != "1.5s" {
		t.Errorf("%s = %q, want 1.5s", relay.MetadataRetryAfter, got)
	}
}
