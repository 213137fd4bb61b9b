package faulttest

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// payloadPrefix starts every payload the cases publish; the id follows.
const payloadPrefix = "relay-fault id="

// Payload returns the payload of message id: the id in text, padded to about
// 64 bytes so that messages are not trivially small.
func Payload(id int) []byte {
	return fmt.Appendf(nil, "%s%08d;%s", payloadPrefix, id, strings.Repeat("x", 40))
}

// ID reads the id back from a payload made by [Payload].
func ID(payload []byte) (int, error) {
	s, ok := strings.CutPrefix(string(payload), payloadPrefix)
	if !ok || len(s) < 8 {
		return 0, fmt.Errorf("faulttest: not a fault payload: %.40q", payload)
	}
	return strconv.Atoi(s[:8])
}

// Ledger records what a case published and what its handlers saw, by
// message id. It is safe for concurrent use.
type Ledger struct {
	mu        sync.Mutex
	confirmed map[int]bool // Publish returned nil
	failed    map[int]bool // Publish returned an error
	attempts  map[int]int  // handler calls
	handled   map[int]int  // handler calls that returned nil
	dead      map[int]int  // dead letters received
	lastAt    time.Time    // last successful handling
}

// NewLedger returns an empty Ledger.
func NewLedger() *Ledger {
	return &Ledger{confirmed: map[int]bool{}, failed: map[int]bool{}, attempts: map[int]int{}, handled: map[int]int{}, dead: map[int]int{}}
}

// Published records the outcome of one Publish of id: only a nil error
// makes the message one that must be consumed.
func (l *Ledger) Published(id int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed[id] = true
		return
	}
	l.confirmed[id] = true
}

// Attempt records a handler call for id and returns its number, 1 for the
// first.
func (l *Ledger) Attempt(id int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts[id]++
	return l.attempts[id]
}

// Handled records that a handler returned nil for id.
func (l *Ledger) Handled(id int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.handled[id]++
	l.lastAt = time.Now()
}

// Dead records a dead letter of id.
func (l *Ledger) Dead(id int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dead[id]++
}

// Confirmed returns the ids whose Publish returned nil, sorted.
func (l *Ledger) Confirmed() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]int, 0, len(l.confirmed))
	for id := range l.confirmed {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

// Failed is the number of Publish calls that returned an error.
func (l *Ledger) Failed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.failed)
}

// settledUpTo reports whether every Publish of ids 1..maxID has returned,
// and every confirmed one of them was handled or dead-lettered.
func (l *Ledger) settledUpTo(maxID int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := 1; id <= maxID; id++ {
		switch {
		case l.failed[id]:
		case !l.confirmed[id]:
			return false // Publish still running
		case l.handled[id] == 0 && l.dead[id] == 0:
			return false
		}
	}
	return true
}

// HandledCount is how many times a handler returned nil for id.
func (l *Ledger) HandledCount(id int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.handled[id]
}

// DeadCount is how many dead letters of id arrived.
func (l *Ledger) DeadCount(id int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dead[id]
}

// Missing returns the ids of ids that were neither handled nor
// dead-lettered, sorted.
func (l *Ledger) Missing(ids []int) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for _, id := range ids {
		if l.handled[id] == 0 && l.dead[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// Tally sums up the ledger: messages is the number of confirmed ids, lost
// those of them neither handled nor dead-lettered, duplicates the handlings
// and dead letters beyond the first of each id (of any id, confirmed or
// not: a publish that failed may still have been stored, which is allowed
// and not a duplicate by itself).
func (l *Ledger) Tally() (messages, lost, duplicates int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.confirmed {
		if l.handled[id] == 0 && l.dead[id] == 0 {
			lost++
		}
	}
	seen := map[int]int{}
	for id, n := range l.handled {
		seen[id] += n
	}
	for id, n := range l.dead {
		seen[id] += n
	}
	for _, n := range seen {
		duplicates += n - 1
	}
	return len(l.confirmed), lost, duplicates
}

// Unconfirmed is the number of ids handled or dead-lettered whose Publish
// did not return nil: stored although the publisher was told it failed
// (allowed: at-least-once publishing).
func (l *Ledger) Unconfirmed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for id := range l.handled {
		if !l.confirmed[id] {
			n++
		}
	}
	return n
}

// DeadTotal is the number of dead letters received.
func (l *Ledger) DeadTotal() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.dead {
		n += c
	}
	return n
}
