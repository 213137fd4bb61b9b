package memory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-relay/relay"
)

func TestDeadLetters(t *testing.T) {
	tests := []struct {
		name         string
		err          error
		panics       bool
		wantAttempts string
	}{
		{name: "after max deliver", err: errors.New("boom"), wantAttempts: "3"},
		{name: "permanent at once", err: relay.Permanent(errors.New("bad")), wantAttempts: "1"},
		{name: "panic counts as failure", panics: true, wantAttempts: "3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := testHub(t)
			b := newTestBroker(t, hub, WithBackoff(time.Millisecond, 2*time.Millisecond))
			if err := b.Subscribe("src", func(p []byte) error {
				if tt.panics {
					panic("handler panic")
				}
				return tt.err
			}); err != nil {
				t.Fatal(err)
			}
			sub, err := NewSubscriber(hub, WithGroup("dead-readers"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sub.Close() })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			dead, err := sub.Subscribe(ctx, "src.dead")
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Publish(ctx, "src", []byte("payload")); err != nil {
				t.Fatal(err)
			}
			select {
			case msg := <-dead:
				msg.Ack()
				md := msg.Metadata
				if string(msg.Payload) != "payload" || md.Get(relay.MetadataSourceTopic) != "src" ||
					md.Get(relay.MetadataSourceID) != "1" || md.Get(relay.MetadataAttempts) != tt.wantAttempts ||
					md.Get(relay.MetadataReason) == "" {
					t.Fatalf("dead letter payload %q metadata %v", msg.Payload, md)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no dead letter")
			}
			eventually(t, 5*time.Second, "source acknowledged", func() bool { return pending(hub, "src") == 0 })
		})
	}
}
