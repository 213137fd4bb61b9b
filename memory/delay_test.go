package memory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/memory"
)

func TestDelayOptionRanges(t *testing.T) {
	for _, c := range []struct {
		name string
		opt  memory.Option
		ok   bool
	}{
		{"max delay 1ms", memory.WithMaxDelay(time.Millisecond), true},
		{"max delay at the limit", memory.WithMaxDelay(relay.MaxDelayLimit), true},
		{"max delay 0", memory.WithMaxDelay(0), false},
		{"max delay above the limit", memory.WithMaxDelay(relay.MaxDelayLimit + 1), false},
		{"max retry after 0", memory.WithMaxRetryAfter(0), true},
		{"max retry after at the limit", memory.WithMaxRetryAfter(relay.MaxRetryAfterLimit), true},
		{"max retry after negative", memory.WithMaxRetryAfter(-1), false},
		{"max retry after above the limit", memory.WithMaxRetryAfter(relay.MaxRetryAfterLimit + 1), false},
	} {
		b, err := memory.NewBroker(c.opt)
		if b != nil {
			_ = b.Close()
		}
		if (err == nil) != c.ok || (!c.ok && !errors.Is(err, relay.ErrInvalidOption)) {
			t.Errorf("%s: NewBroker = %v", c.name, err)
		}
	}
}

func TestPublishAtRespectsWithMaxDelay(t *testing.T) {
	b, err := memory.NewBroker(memory.WithMaxDelay(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.PublishAt(context.Background(), "t", nil, time.Now().Add(2*time.Minute)); !errors.Is(err, relay.ErrInvalidDelay) {
		t.Errorf("PublishAt 2 minutes ahead with a 1 minute maximum = %v, want ErrInvalidDelay", err)
	}
	if err := b.PublishAt(context.Background(), "t", nil, time.Now().Add(30*time.Second)); err != nil {
		t.Errorf("PublishAt 30s ahead with a 1 minute maximum = %v", err)
	}
}
