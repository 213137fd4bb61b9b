package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/delay"
	"github.com/ThreeDotsLabs/watermill/message"
	"golang.org/x/term"

	"github.com/go-relay/relay"
)

// tracker records every delivery by order id, so the summary can say, id by id,
// what happened.
type tracker struct {
	mu        sync.Mutex
	nPub      int
	attempts  map[string]int            // validation deliveries per id
	seen      map[string]map[string]int // stage → id → successful handlings
	latencies []time.Duration           // placed → billed
	delayed   int                       // delayed orders validated (first delivery)
	early     int                       // of them, delivered before their due time
}

func newTracker() *tracker {
	return &tracker{attempts: map[string]int{}, seen: map[string]map[string]int{
		"validated": {}, "billed": {}, "audited": {}, "dead": {}}}
}

func (t *tracker) published(n int) { t.mu.Lock(); t.nPub += n; t.mu.Unlock() }

func (t *tracker) validate(msg *message.Message) ([]*message.Message, error) {
	var o order
	if err := json.Unmarshal(msg.Payload, &o); err != nil {
		return nil, relay.Permanent(fmt.Errorf("decode order: %w", err))
	}
	t.mu.Lock()
	t.attempts[o.ID]++
	attempt := t.attempts[o.ID]
	t.mu.Unlock()
	switch {
	case o.Kind == "poison":
		return nil, fmt.Errorf("order %s: customer %s is blocked", o.ID, o.Customer)
	case o.Kind == "flaky" && attempt == 1:
		return nil, fmt.Errorf("order %s: credit check timed out", o.ID)
	}
	if o.Delay > 0 && attempt == 1 {
		t.mu.Lock()
		t.delayed++
		if due, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(delay.DelayedUntilKey)); err != nil || time.Now().Before(due) {
			t.early++ // a delayed order delivered before its time (or without its due time)
		}
		t.mu.Unlock()
	}
	t.count("validated", o.ID)
	accepted := message.NewMessage(watermill.NewUUID(), msg.Payload)
	accepted.Metadata.Set(placedAtKey, msg.Metadata.Get(placedAtKey))
	return []*message.Message{accepted}, nil
}

func (t *tracker) stage(name string) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		var o order
		if err := json.Unmarshal(msg.Payload, &o); err != nil {
			return relay.Permanent(fmt.Errorf("decode order: %w", err))
		}
		t.count(name, o.ID)
		if name == "billed" {
			if ns, err := strconv.ParseInt(msg.Metadata.Get(placedAtKey), 10, 64); err == nil {
				t.mu.Lock()
				t.latencies = append(t.latencies, time.Since(time.Unix(0, ns)))
				t.mu.Unlock()
			}
		}
		return nil
	}
}

func (t *tracker) count(stage, id string) {
	t.mu.Lock()
	t.seen[stage][id]++
	t.mu.Unlock()
}

// waitAll polls until every good order was billed and audited and every poison
// order dead-lettered, or ctx ends, or timeout passes. It reports whether the
// flow finished.
func (t *tracker) waitAll(ctx context.Context, orders []order, timeout time.Duration) bool {
	var good, poison int
	for _, o := range orders {
		if o.Kind == "poison" {
			poison++
		} else {
			good++
		}
	}
	deadline := time.After(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		t.mu.Lock()
		done := len(t.seen["billed"]) >= good && len(t.seen["audited"]) >= good && len(t.seen["dead"]) >= poison
		t.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline:
			return false
		case <-tick.C:
		}
	}
}

// summarize prints the table and checks every id.
// When check is false (the run was interrupted) lost is not computed: orders
// not yet handled are not lost, merely unfinished.
func summarize(out io.Writer, orders []order, t *tracker, elapsed time.Duration, check bool) result {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lost, completed, dups, redelivered int
	var lostIDs []string
	for _, o := range orders {
		var ok bool
		if o.Kind == "poison" {
			ok = t.seen["dead"][o.ID] > 0
		} else {
			ok = t.seen["billed"][o.ID] > 0 && t.seen["audited"][o.ID] > 0
		}
		if ok {
			completed++
		} else {
			lost++
			if len(lostIDs) < 5 {
				lostIDs = append(lostIDs, o.ID)
			}
		}
		redelivered += max(0, t.attempts[o.ID]-1)
	}
	for _, byID := range t.seen {
		for _, n := range byID {
			dups += max(0, n-1)
		}
	}
	slices.Sort(t.latencies)
	pct := func(p float64) string {
		if len(t.latencies) == 0 {
			return "-"
		}
		return t.latencies[min(len(t.latencies)-1, int(p*float64(len(t.latencies))))].Round(10 * time.Microsecond).String()
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(name string, v any) { fmt.Fprintf(w, "  %s\t%v\n", name, v) }
	fmt.Fprintln(out)
	row("published", t.nPub)
	row("validated", len(t.seen["validated"]))
	row("billed", len(t.seen["billed"]))
	row("audited", len(t.seen["audited"]))
	row("redelivered (retries)", redelivered)
	row("dead-lettered", len(t.seen["dead"]))
	if t.delayed > 0 {
		row("delayed (delay.For), early", fmt.Sprintf("%d, %d", t.delayed, t.early))
	}
	row("duplicates seen", dups)
	row("completed", completed)
	if check {
		row("lost (checked by id)", lost)
	} else {
		row("lost (checked by id)", "not checked")
		lost = 0
	}
	row("elapsed", elapsed.Round(time.Millisecond))
	// A rate counts what was done: the orders that reached their end
	// (billed and audited, or dead-lettered), not those merely published,
	// which differ when the run is interrupted.
	row("completed orders/s", fmt.Sprintf("%.0f", float64(completed)/elapsed.Seconds()))
	row("latency p50 placed→billed", pct(0.50))
	row("latency p99 placed→billed", pct(0.99))
	_ = w.Flush()
	if check && lost > 0 {
		fmt.Fprintf(out, "LOST %d orders, for example %v\n", lost, lostIDs)
	}
	if t.early > 0 {
		fmt.Fprintf(out, "EARLY: %d delayed orders delivered before their due time\n", t.early)
	}
	validations := 0
	for _, n := range t.seen["validated"] {
		validations += n
	}
	return result{published: t.nPub, lost: lost, completed: completed, early: t.early,
		redelivered: redelivered, validations: validations, deadLettered: len(t.seen["dead"])}
}

// progress prints a live line: rewritten in place on a terminal, otherwise at
// most one line every five seconds so that logs stay readable.
type progress struct {
	done chan struct{}
	wg   sync.WaitGroup
}

func startProgress(out io.Writer, t *tracker, n int) *progress {
	p := &progress{done: make(chan struct{})}
	f, isFile := out.(*os.File)
	tty := isFile && term.IsTerminal(int(f.Fd()))
	every := 5 * time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-p.done:
				if tty {
					fmt.Fprint(out, "\r\033[K")
				}
				return
			case <-tick.C:
			}
			t.mu.Lock()
			line := fmt.Sprintf("published %d/%d  validated %d  billed %d  audited %d  dead %d",
				t.nPub, n, len(t.seen["validated"]), len(t.seen["billed"]), len(t.seen["audited"]), len(t.seen["dead"]))
			t.mu.Unlock()
			if tty {
				fmt.Fprint(out, "\r\033[K"+line)
			} else {
				fmt.Fprintln(out, line)
			}
		}
	}()
	return p
}

func (p *progress) stop() { close(p.done); p.wg.Wait() }

// printOutcomes prints relay.delivery.outcomes of the validated topic from
// the run's meter, and whether they match the ledger of a finished run: every
// successful validation (a duplicate too) is an "acked" outcome, every retry
// of a validation a "retried" one, every dead letter a "dead_lettered" one,
// and nothing was handed back.
func printOutcomes(out io.Writer, m *meters, topic string, res *result) error {
	// A dead letter is counted just after it is stored, so the ledger may
	// see it a moment before the meter does: wait a little for the meter.
	var got map[string]int64
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if got, err = m.outcomes(topic); err != nil {
			return fmt.Errorf("read the meter: %w", err)
		}
		if matches(got, res) || time.Now().After(deadline) {
			break
		}
	}
	fmt.Fprintf(out, "  %-27sacked %d, retried %d, dead_lettered %d, handed_back %d\n", "validate outcomes (meter)",
		got["acked"], got["retried"], got["dead_lettered"], got["handed_back"])
	if !matches(got, res) {
		res.meterMismatch = true
		fmt.Fprintf(out, "  MISMATCH: the ledger counts %d validations, %d retries, %d dead letters and nothing handed back\n",
			res.validations, res.redelivered, res.deadLettered)
	}
	return nil
}

// matches reports whether the meter's outcomes equal the ledger's counts.
func matches(got map[string]int64, res *result) bool {
	return got["acked"] == int64(res.validations) && got["retried"] == int64(res.redelivered) &&
		got["dead_lettered"] == int64(res.deadLettered) && got["handed_back"] == 0
}
