package delivery_test

import (
	"errors"
	"testing"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

func TestReadDeadLetterAndRedriven(t *testing.T) {
	d := &delivery.Delivery{Topic: "orders", ID: "42", Attempt: 3,
		Message: delivery.Message{UUID: "u1", Payload: []byte("p"), Metadata: map[string]string{"tenant": "eu"}}}
	stored := time.Unix(1700000000, 0)
	dl := delivery.ReadDeadLetter("orders.dead", "9", stored, delivery.DeadLetterMessage(d, errors.New("boom")))
	if dl.SourceTopic != "orders" || dl.SourceID != "42" || dl.Attempts != 3 || dl.Reason != "boom" || dl.UUID != "u1" || !dl.Time.Equal(stored) {
		t.Fatalf("ReadDeadLetter = %+v", dl)
	}
	m := delivery.Redriven(dl, "u2")
	if m.UUID != "u2" || string(m.Payload) != "p" {
		t.Errorf("Redriven UUID %q payload %q, want u2 and p", m.UUID, m.Payload)
	}
	want := map[string]string{"tenant": "eu", relay.MetadataRedrivenFrom: "orders.dead/9"}
	if len(m.Metadata) != len(want) {
		t.Errorf("Redriven metadata %v, want %v", m.Metadata, want)
	}
	for k, v := range want {
		if m.Metadata[k] != v {
			t.Errorf("Redriven metadata %q = %q, want %q", k, m.Metadata[k], v)
		}
	}
	if dl.Metadata[relay.MetadataReason] != "boom" {
		t.Error("Redriven changed the dead letter's own metadata")
	}
	if to, err := delivery.RedriveTopic(dl, ""); err != nil || to != "orders" {
		t.Errorf("RedriveTopic(dl, \"\") = %q, %v; want orders", to, err)
	}
	if _, err := delivery.RedriveTopic(relay.DeadLetter{}, ""); !errors.Is(err, relay.ErrInvalidTopic) {
		t.Errorf("RedriveTopic of a dead letter without source = %v, want ErrInvalidTopic", err)
	}
}
