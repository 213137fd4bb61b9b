package faulttest

import (
	"errors"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPayloadID(t *testing.T) {
	for _, id := range []int{0, 7, 12345678} {
		got, err := ID(Payload(id))
		if err != nil || got != id {
			t.Errorf("ID(Payload(%d)) = %d, %v", id, got, err)
		}
	}
	if _, err := ID([]byte("foreign")); err == nil {
		t.Error("ID of a foreign payload: no error")
	}
}

func TestLedgerTally(t *testing.T) {
	l := NewLedger()
	for id := range 4 {
		l.Published(id, nil)
	}
	l.Published(9, errors.New("failed"))
	l.Handled(0)
	l.Handled(0) // a duplicate
	l.Handled(1)
	l.Dead(2)
	l.Handled(9) // stored although Publish failed: not lost, not a duplicate
	messages, lost, dups := l.Tally()
	if messages != 4 || lost != 1 || dups != 1 {
		t.Errorf("Tally() = %d, %d, %d; want 4 messages, 1 lost (3), 1 duplicate", messages, lost, dups)
	}
	if l.Failed() != 1 || l.Unconfirmed() != 1 {
		t.Errorf("Failed() = %d, Unconfirmed() = %d; want 1 and 1", l.Failed(), l.Unconfirmed())
	}
	if got := l.Missing(l.Confirmed()); len(got) != 1 || got[0] != 3 {
		t.Errorf("Missing = %v, want [3]", got)
	}
}
