package natsjs_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// Tail yields what is stored after the call, in order, takes nothing from
// any group, and leaves nothing behind.
func TestInspectorTail(t *testing.T) {
	s := natstest.StartEmbedded(t, natstest.Config{}) // fixed stream names: a server of its own
	nc, js := connect(t, s)
	in := newInspector(t, js)
	const topic = "audit"
	pub := newBroker(t, js)
	publish(t, pub, topic, []byte("before"))
	subs := nc.NumSubscriptions()

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	got := make(chan relay.StoredMessage, 100)
	ended := make(chan error, 1)
	go func() {
		defer close(got)
		for m, err := range in.Tail(ctx, topic) {
			if err != nil {
				ended <- err
				return
			}
			got <- m
		}
		ended <- nil
	}()
	// Until the tail is reading, what is published may come before its
	// start: publish until one arrives, then the rest must follow in order.
	var first relay.StoredMessage
	for i := 0; first.ID == ""; i++ {
		publish(t, pub, topic, []byte("probe-"+strconv.Itoa(i)))
		select {
		case first = <-got:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("the tail yielded nothing")
		}
	}
	if string(first.Payload) == "before" || first.Topic != topic || first.UUID == "" || first.Time.IsZero() {
		t.Fatalf("first = %+v, want a probe published after the call", first)
	}
	// The probes after first, then three more, are yielded in stream order.
	published := topicInfo(t, in, topic).Messages
	for i := range 3 {
		publish(t, pub, topic, []byte("after-"+strconv.Itoa(i)))
	}
	firstSeq, _ := strconv.ParseUint(first.ID, 10, 64)
	for seq := firstSeq + 1; seq <= published+3; seq++ {
		select {
		case m := <-got:
			if m.ID != strconv.FormatUint(seq, 10) {
				t.Fatalf("yielded sequence %s (%q), want %d", m.ID, m.Payload, seq)
			}
		case <-ctx.Done():
			t.Fatalf("sequence %d not yielded", seq)
		}
	}
	ti := topicInfo(t, in, topic)
	if len(ti.Groups) != 0 {
		t.Errorf("groups while tailing = %+v, want none: the tail creates no consumer", ti.Groups)
	}
	cancel()
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("tail ended with %v, want no error when ctx is done", err)
		}
	case <-time.After(wait):
		t.Fatal("tail did not end with its ctx")
	}
	eventually(t, func() bool { return nc.NumSubscriptions() == subs }, "the tail's subscription removed")
}

func TestInspectorTailErrors(t *testing.T) {
	s := natstest.StartEmbedded(t, natstest.Config{}) // fixed stream names: a server of its own
	_, js := connect(t, s)
	in := newInspector(t, js)
	tests := []struct {
		name, topic string
		want        error
	}{
		{"unknown topic", "nothing", relay.ErrUnknownTopic},
		{"invalid topic", "a.*", relay.ErrInvalidTopic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			for _, err := range in.Tail(inspectCtx(t), tt.topic) {
				n++
				if !errors.Is(err, tt.want) {
					t.Errorf("error = %v, want %v", err, tt.want)
				}
			}
			if n != 1 {
				t.Errorf("yielded %d times, want the error once", n)
			}
		})
	}
	var _ relay.Tailer = (*natsjs.Inspector)(nil)
}
