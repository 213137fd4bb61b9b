package memory

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-relay/relay/internal/testkit"
)

func TestGroupsFanOutAndCompete(t *testing.T) {
	tests := []struct {
		name      string
		groups    [2]string
		wantTotal int // deliveries over both brokers
	}{
		{name: "same group competes", groups: [2]string{"g", "g"}, wantTotal: 20},
		{name: "different groups fan out", groups: [2]string{"a", "b"}, wantTotal: 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := testHub(t)
			var recs [2]recorder
			for i, g := range tt.groups {
				b := newTestBroker(t, hub, WithGroup(g))
				if err := b.Subscribe("orders", recs[i].handle); err != nil {
					t.Fatal(err)
				}
			}
			pub := newTestBroker(t, hub)
			publishN(t, pub, "orders", 20)
			total := func() int { return recs[0].len() + recs[1].len() }
			eventually(t, 5*time.Second, "all deliveries", func() bool { return total() >= tt.wantTotal })
			time.Sleep(50 * time.Millisecond) // a duplicate would show up now
			if total() != tt.wantTotal {
				t.Fatalf("delivered %d messages in all, want %d", total(), tt.wantTotal)
			}
			if tt.groups[0] != tt.groups[1] {
				for i := range recs {
					if recs[i].len() != 20 {
						t.Fatalf("group %s got %d messages, want 20", tt.groups[i], recs[i].len())
					}
				}
			}
			eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "orders") == 0 })
		})
	}
}

func TestUnfinishedWatermillDeliveryStaysForGroup(t *testing.T) {
	hub := testHub(t)
	first, err := NewSubscriber(hub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Close() })
	ch, err := first.Subscribe(context.Background(), "w")
	if err != nil {
		t.Fatal(err)
	}
	pub := newTestBroker(t, hub)
	publishN(t, pub, "w", 1)
	var uuid string
	select {
	case msg := <-ch:
		uuid = msg.UUID // taken and never acked
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	testkit.Closed(t, ch, waitClose, "output channel after Close")

	second, err := NewSubscriber(hub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Close() })
	ch2, err := second.Subscribe(context.Background(), "w")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-ch2:
		if msg.UUID != uuid {
			t.Fatalf("redelivered UUID %s, want %s", msg.UUID, uuid)
		}
		msg.Ack()
	case <-time.After(5 * time.Second):
		t.Fatal("unfinished delivery not redelivered to the group's next subscriber")
	}
	eventually(t, 5*time.Second, "acked", func() bool { return pending(hub, "w") == 0 })
}

func TestConcurrencyBound(t *testing.T) {
	const conc = 3
	b := newTestBroker(t, testHub(t), WithConcurrency(conc))
	var mu sync.Mutex
	running, peak, done := 0, 0, 0
	if err := b.Subscribe("load", func([]byte) error {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		running--
		done++
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "load", 30)
	eventually(t, 5*time.Second, "30 handled", func() bool { mu.Lock(); defer mu.Unlock(); return done == 30 })
	if peak != conc {
		t.Fatalf("peak concurrency %d, want %d", peak, conc)
	}
}

func TestSubscribeInitializeKeepsMessagesForGroup(t *testing.T) {
	hub := testHub(t)
	sub, err := NewSubscriber(hub, WithGroup("late"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	if err := sub.SubscribeInitialize("init"); err != nil {
		t.Fatal(err)
	}
	// Another group consumes everything; the initialized group still holds it.
	var rec recorder
	b := newTestBroker(t, hub, WithGroup("eager"))
	if err := b.Subscribe("init", rec.handle); err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "init", 3)
	eventually(t, 5*time.Second, "eager group done", func() bool { return rec.len() == 3 })
	if got := stored(hub, "init"); got != 3 {
		t.Fatalf("topic holds %d messages, want 3 kept for the initialized group", got)
	}
	ch, err := sub.Subscribe(context.Background(), "init")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		select {
		case msg := <-ch:
			msg.Ack()
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d not delivered to the initialized group", i)
		}
	}
	eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "init") == 0 })
}

// Lost wake-ups: competing subscriptions of one group come and go while
// messages are published, fail and are redelivered after short backoffs.
// Every message must be handled (a wake-up handed to a stopping worker must
// reach another subscription), and none may stay stored.
func TestWakeUpsUnderSubscriptionChurn(t *testing.T) {
	const messages = 2000
	hub := testHub(t)
	opts := []Option{WithGroup("g"), WithConcurrency(2), WithBackoff(time.Millisecond, 3*time.Millisecond),
		WithMaxDeliver(1000)}
	var handled sync.Map // payload → struct{}
	var count atomic.Int64
	var calls atomic.Int64
	handler := func(p []byte) error {
		if calls.Add(1)%7 == 0 {
			return errors.New("transient") // every seventh call fails: redeliveries and timers
		}
		if _, dup := handled.LoadOrStore(string(p), struct{}{}); !dup {
			count.Add(1)
		}
		return nil
	}
	// One subscription that lives through the test, so that progress never
	// depends on the churn alone.
	if err := newTestBroker(t, hub, opts...).Subscribe("churn", handler); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var churn sync.WaitGroup
	for range 3 {
		churn.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				b, err := NewBroker(append([]Option{WithHub(hub)}, opts...)...)
				if err != nil {
					t.Error(err)
					return
				}
				if err := b.Subscribe("churn", handler); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Millisecond)
				_ = b.Close()
			}
		})
	}
	pub := newTestBroker(t, hub)
	var pubs sync.WaitGroup
	for w := range 4 {
		pubs.Go(func() {
			for i := w; i < messages; i += 4 {
				if err := pub.Publish(context.Background(), "churn", []byte(strconv.Itoa(i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	testkit.Wait(t, &pubs, 20*time.Second, "4 publishers of %d messages", messages)
	eventually(t, 20*time.Second, "every message handled", func() bool { return count.Load() == messages })
	close(stop)
	testkit.Wait(t, &churn, waitClose, "the churning brokers' Close")
	eventually(t, 5*time.Second, "every group acknowledged", func() bool { return pending(hub, "churn") == 0 })
}
