package memory

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestHubCapacityBlocksPublishUntilSpaceOrContext(t *testing.T) {
	hub := testHub(t, WithCapacity(2))
	b := newTestBroker(t, hub, WithConcurrency(1))
	publishN(t, b, "full", 2)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.Publish(ctx, "full", []byte("x"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish on a full topic = %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if time.Since(start) < 40*time.Millisecond {
		t.Fatalf("Publish on a full topic returned after %v, before its deadline", time.Since(start))
	}

	// A publish blocked on the full topic goes through once a group acks.
	done := make(chan error, 1)
	go func() { done <- b.Publish(context.Background(), "full", []byte("2")) }()
	select {
	case err := <-done:
		t.Fatalf("Publish on a full topic returned %v without space", err)
	case <-time.After(30 * time.Millisecond):
	}
	var rec recorder
	if err := b.Subscribe("full", rec.handle); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("blocked Publish: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked Publish did not return after the group acked")
	}
	eventually(t, 5*time.Second, "3 deliveries", func() bool { return rec.len() == 3 })
	if got, want := rec.list(), []string{"0", "1", "2"}; !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

func TestLateGroupGetsStoredMessages(t *testing.T) {
	hub := testHub(t)
	b := newTestBroker(t, hub, WithConcurrency(1))
	publishN(t, b, "early", 5)
	if got := stored(hub, "early"); got != 5 {
		t.Fatalf("topic without group holds %d messages, want 5", got)
	}
	var rec recorder
	if err := b.Subscribe("early", rec.handle); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "5 deliveries", func() bool { return rec.len() == 5 })
	if got, want := rec.list(), []string{"0", "1", "2", "3", "4"}; !slices.Equal(got, want) {
		t.Fatalf("late group got %v, want %v", got, want)
	}
	eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "early") == 0 })

	if got := stored(hub, "early"); got != 5 {
		t.Fatalf("after the only group acknowledged them, topic holds %d messages, want 5 kept", got)
	}
}

// As from a NATS or Redis stream, a group created after every existing group
// acknowledged the messages still gets them: the topic keeps acknowledged
// messages up to its capacity.
func TestLateGroupGetsMessagesOtherGroupsAcked(t *testing.T) {
	hub := testHub(t)
	var first recorder
	b := newTestBroker(t, hub, WithGroup("first"), WithConcurrency(1))
	if err := b.Subscribe("kept", first.handle); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "kept", 3)
	eventually(t, 5*time.Second, "first group done", func() bool { return first.len() == 3 })
	eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "kept") == 0 })

	var late recorder
	if err := newTestBroker(t, hub, WithGroup("late"), WithConcurrency(1)).Subscribe("kept", late.handle); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "late group gets the acknowledged messages", func() bool { return late.len() == 3 })
	if got, want := late.list(), []string{"0", "1", "2"}; !slices.Equal(got, want) {
		t.Fatalf("late group got %v, want %v", got, want)
	}
}

// A full topic makes room by dropping the oldest message that every group
// acknowledged, even when an older one is still held by a group; a group
// created later then starts at the oldest message left.
func TestFullTopicDropsOldestMessageEveryGroupAcked(t *testing.T) {
	hub := testHub(t, WithCapacity(4))
	// Group "slow" holds message "0" in its handler and acknowledges the rest.
	var slowGot recorder
	slow := newTestBroker(t, hub, WithGroup("slow"), WithConcurrency(2))
	release := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before the broker's Close, even when the test fails
	if err := slow.Subscribe("t", func(p []byte) error {
		if string(p) == "0" {
			<-release
		}
		return slowGot.handle(p)
	}); err != nil {
		t.Fatal(err)
	}
	var fast recorder
	if err := newTestBroker(t, hub, WithGroup("fast")).Subscribe("t", fast.handle); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := slow.Publish(ctx, "t", []byte(strconv.Itoa(i)))
		cancel()
		if err != nil {
			t.Fatalf("Publish %d on a full topic with acknowledged messages: %v", i, err)
		}
		// Message i acknowledged by both groups before the next publish.
		eventually(t, 5*time.Second, "both groups done", func() bool {
			return fast.len() == i+1 && (i == 0 || slowGot.len() == i)
		})
	}
	if got := stored(hub, "t"); got != 4 {
		t.Fatalf("topic holds %d messages, want its capacity, 4", got)
	}
	var late recorder
	if err := newTestBroker(t, hub, WithGroup("late"), WithConcurrency(1)).Subscribe("t", late.handle); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "late group done", func() bool { return late.len() == 4 })
	if got, want := late.list(), []string{"0", "3", "4", "5"}; !slices.Equal(got, want) {
		t.Fatalf("late group got %v, want %v: the unacknowledged 0 and the newest", got, want)
	}
	unblock()
	eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "t") == 0 })
}

// A message is dropped only once every existing group acknowledged it, and
// never while the topic has no group: then a full topic blocks Publish.
func TestFullTopicBlocksWhileNoMessageCanBeDropped(t *testing.T) {
	tests := []struct {
		name  string
		group bool // a group exists and has not acknowledged anything
	}{
		{name: "no group", group: false},
		{name: "group not done", group: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := testHub(t, WithCapacity(2))
			b := newTestBroker(t, hub)
			if tt.group {
				sub, err := NewSubscriber(hub, WithGroup("idle"))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = sub.Close() })
				if err := sub.SubscribeInitialize("full"); err != nil {
					t.Fatal(err)
				}
			}
			publishN(t, b, "full", 2)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			if err := b.Publish(ctx, "full", []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Publish on a full topic = %v, want an error wrapping context.DeadlineExceeded", err)
			}
			if got := stored(hub, "full"); got != 2 {
				t.Fatalf("topic holds %d messages, want 2", got)
			}
		})
	}
}

func TestMessageStaysPendingUntilEveryGroupAcks(t *testing.T) {
	hub := testHub(t)
	release := make(chan struct{})
	slow := newTestBroker(t, hub, WithGroup("slow"))
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before the broker's Close, even when the test fails
	if err := slow.Subscribe("t", func([]byte) error { <-release; return nil }); err != nil {
		t.Fatal(err)
	}
	var fast recorder
	if err := newTestBroker(t, hub, WithGroup("fast")).Subscribe("t", fast.handle); err != nil {
		t.Fatal(err)
	}
	publishN(t, slow, "t", 3)
	eventually(t, 5*time.Second, "fast group done", func() bool { return fast.len() == 3 })
	if got := stored(hub, "t"); got != 3 {
		t.Fatalf("after one of two groups acked, topic holds %d messages, want 3", got)
	}

	// A group made now starts at the oldest message still stored.
	var third recorder
	if err := newTestBroker(t, hub, WithGroup("third")).Subscribe("t", third.handle); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "third group gets stored messages", func() bool { return third.len() == 3 })

	unblock()
	eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "t") == 0 })
}
