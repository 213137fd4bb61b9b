package memory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit"
)

// A message purged while a group has not yet taken it is never delivered to
// that group; the other messages are.
func TestPurgedMessageIsSkippedByGroupsThatHaveNotTakenIt(t *testing.T) {
	hub := testHub(t)
	in, err := NewInspector(hub)
	require.NoError(t, err)
	ctx := context.Background()
	pub := newTestBroker(t, hub)
	// The group exists before the messages, so each is in its queue.
	newTestBroker(t, hub, WithGroup("late")).e.join("t")
	for _, p := range []string{"a", "b", "c"} {
		require.NoError(t, pub.Publish(ctx, "t", []byte(p)))
	}
	require.NoError(t, in.Purge(ctx, relay.DeadLetter{Topic: "t", ID: "2"}))
	info, err := in.Topic(ctx, "t")
	require.NoError(t, err)
	assert.EqualValues(t, 2, info.Messages)
	assert.Equal(t, "1", info.FirstID)
	assert.Equal(t, "3", info.LastID)

	got := make(chan string, 3)
	sub := newTestBroker(t, hub, WithGroup("late"), WithConcurrency(1))
	require.NoError(t, sub.Subscribe("t", func(p []byte) error { got <- string(p); return nil }))
	assert.Equal(t, "a", testkit.Receive(t, got, waitClose, "delivery of the first message left"))
	assert.Equal(t, "c", testkit.Receive(t, got, waitClose, "delivery of the last message left"))
	select {
	case p := <-got:
		t.Fatalf("purged message delivered: %q", p)
	case <-time.After(50 * time.Millisecond):
	}
	// An acknowledgement of a purged message, and a purge of one already
	// gone, change nothing.
	require.NoError(t, in.Purge(ctx, relay.DeadLetter{Topic: "t", ID: "2"}))
	err = in.Purge(ctx, relay.DeadLetter{Topic: "t", ID: "x"})
	assert.ErrorContains(t, err, "not a message number")
	assert.ErrorIs(t, in.Purge(ctx, relay.DeadLetter{Topic: "nope", ID: "1"}), relay.ErrUnknownTopic)
}

// A publisher waiting for room on a full topic is woken by a purge.
func TestPurgeMakesRoomForAWaitingPublisher(t *testing.T) {
	hub := testHub(t, WithCapacity(1))
	in, err := NewInspector(hub)
	require.NoError(t, err)
	ctx := context.Background()
	pub := newTestBroker(t, hub)
	newTestBroker(t, hub, WithGroup("g")).e.join("t") // holds every message
	require.NoError(t, pub.Publish(ctx, "t", []byte("first")))
	done := make(chan error, 1)
	go func() { done <- pub.Publish(ctx, "t", []byte("second")) }()
	select {
	case err := <-done:
		t.Fatalf("Publish on a full topic returned %v, want it to wait", err)
	case <-time.After(20 * time.Millisecond):
	}
	require.NoError(t, in.Purge(ctx, relay.DeadLetter{Topic: "t", ID: "1"}))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Publish still waiting after a purge made room")
	}
}

// DeleteConsumer refuses a group with a running subscription, and once it
// is deleted the messages it held back can be dropped for room.
func TestDeleteConsumerOfAGroup(t *testing.T) {
	hub := testHub(t, WithCapacity(2))
	in, err := NewInspector(hub)
	require.NoError(t, err)
	ctx := context.Background()
	pub := newTestBroker(t, hub)
	sub := newTestBroker(t, hub, WithGroup("g"))
	require.NoError(t, sub.Subscribe("t", func([]byte) error { return nil }))
	err = in.DeleteConsumer(ctx, "t", "g", "g")
	require.ErrorIs(t, err, errSubscribed)
	require.NoError(t, sub.Close())

	newTestBroker(t, hub, WithGroup("idle")).e.join("t")
	require.NoError(t, pub.Publish(ctx, "t", []byte("1")))
	require.NoError(t, pub.Publish(ctx, "t", []byte("2")))
	require.NoError(t, in.DeleteConsumer(ctx, "t", "idle", "idle"))
	require.NoError(t, in.DeleteConsumer(ctx, "t", "g", "g"))
	info, err := in.Topic(ctx, "t")
	require.NoError(t, err)
	assert.Empty(t, info.Groups)
	// The topic is full, but nothing holds its messages now: Publish drops one.
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, pub.Publish(pctx, "t", []byte("3")))
	assert.True(t, errors.Is(in.DeleteConsumer(ctx, "t", "idle", "idle"), relay.ErrUnknownConsumer))
}

func TestNewInspectorRefusesANilHub(t *testing.T) {
	_, err := NewInspector(nil)
	require.ErrorIs(t, err, relay.ErrInvalidOption)
}
