package memory

import (
	"context"
	"testing"
	"time"
)

func TestPublishCopiesPayload(t *testing.T) {
	hub := testHub(t)
	b := newTestBroker(t, hub, WithConcurrency(1))
	got := make(chan []byte, 2)
	if err := b.Subscribe("p", func(p []byte) error { got <- p; return nil }); err != nil {
		t.Fatal(err)
	}
	buf := []byte("abc")
	if err := b.Publish(context.Background(), "p", buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "xyz")
	if err := b.Publish(context.Background(), "p", nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"abc", ""} {
		select {
		case p := <-got:
			if string(p) != want || p == nil {
				t.Fatalf("delivered %q (nil: %v), want %q, not nil", p, p == nil, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no delivery")
		}
	}
}
