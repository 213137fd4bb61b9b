package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/examples/internal/exampleenv"
)

// waitTimeout bounds every wait of the demo.
const waitTimeout = 15 * time.Second

// invoice is what the producer publishes and billing consumes.
type invoice struct {
	ID       string `json:"id"`
	Cents    int    `json:"cents"`
	Currency string `json:"currency"`
}

// billed is what the billing handler reports about one delivery.
type billed struct {
	id      string
	attempt int   // the handler's own count of deliveries of this payload
	err     error // nil: billed
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	// Failures are the point of the demo: log only the unexpected, unless -v.
	logger := exampleenv.Logger(cfg.verbose)
	be, err := openBackend(cfg, logger)
	if err != nil {
		return err
	}
	defer be.close()
	defer be.publisher.Close()
	topic := be.ns + "invoices"
	dead := topic + ".dead" // every backend's default dead-letter topic

	fmt.Fprintf(out, "deadletters: %s, max deliver %d\n", be.desc, maxDeliver)
	events, stopBilling, err := startBilling(be, topic)
	if err != nil {
		return err
	}
	defer stopBilling()

	fmt.Fprintf(out, "\n1. the producer publishes to %q; billing consumes it (byte face, group \"billing\")\n", topic)
	sent, err := produce(be.publisher, topic, out)
	if err != nil {
		return err
	}
	if err := awaitBilling(ctx, events, out, func(b billed) bool { return b.id == "inv-2" && b.attempt == maxDeliver }); err != nil {
		return err
	}

	fmt.Fprintf(out, "\n2. the ops tool reads %q with the backend's relay.Inspector (it takes nothing from any group)\n", dead)
	dl, err := awaitDeadLetter(ctx, be.inspector, dead)
	if err != nil {
		return err
	}
	printDeadLetter(out, dl, sent)

	fmt.Fprintf(out, "\n3. the ops tool fixes it and redrives it to its source topic\n")
	fixed, err := fixCurrency(dl.Payload)
	if err != nil {
		return fmt.Errorf("fix dead letter %s: %w", dl.ID, err)
	}
	fmt.Fprintf(out, "  fixed:     %s\n", fixed)
	dl.Payload = fixed // Redrive publishes the dead letter's payload and metadata as they are now
	if err := be.inspector.Redrive(ctx, dl, ""); err != nil {
		return err
	}
	source := dl.SourceTopic
	fmt.Fprintf(out, "  published to %q as a new message (new UUID, %s = %s/%s), then removed the dead letter\n",
		source, relay.MetadataRedrivenFrom, dl.Topic, dl.ID)
	if err := awaitBilling(ctx, events, out, func(b billed) bool { return b.id == "inv-2" && b.err == nil }); err != nil {
		return err
	}
	info, err := be.inspector.Topic(ctx, topic)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  %q now holds %d dead letters\n", dead, info.DeadLetters)
	fmt.Fprintf(out, "\n2 invoices billed, 1 of them after a redrive from %q to %q\n", dead, source)
	return nil
}

// startBilling subscribes the billing service to topic. It rejects invoices
// in a currency it does not know, with an ordinary error, so that the backend
// retries them up to max deliver; since no retry can fix a typo, a real
// service would rather wrap it with relay.Permanent to dead-letter it at once.
func startBilling(be *backend, topic string) (<-chan billed, func(), error) {
	b, err := be.broker("billing")
	if err != nil {
		return nil, nil, err
	}
	events := make(chan billed, 64)
	done := make(chan struct{}) // closed before Close, so that no handler blocks on events
	var mu sync.Mutex
	attempts := map[string]int{} // by payload: the byte face has no attempt number
	err = b.Subscribe(topic, func(payload []byte) error {
		mu.Lock()
		attempts[string(payload)]++
		attempt := attempts[string(payload)]
		mu.Unlock()
		var inv invoice
		err := json.Unmarshal(payload, &inv)
		switch {
		case err != nil:
			err = relay.Permanent(fmt.Errorf("decode invoice: %w", err))
		case inv.Currency != "EUR" && inv.Currency != "USD":
			err = fmt.Errorf("unknown currency %q", inv.Currency)
		}
		select {
		case events <- billed{id: inv.ID, attempt: attempt, err: err}:
		case <-done:
		}
		return err
	})
	if err != nil {
		_ = b.Close()
		return nil, nil, err
	}
	stop := func() { close(done); _ = b.Close() }
	return events, stop, nil
}

// produce publishes the two invoices, the second with a typo, and returns
// their UUIDs by invoice id.
func produce(pub message.Publisher, topic string, out io.Writer) (map[string]string, error) {
	uuids := map[string]string{}
	var msgs []*message.Message
	for _, inv := range []invoice{{ID: "inv-1", Cents: 1200, Currency: "EUR"}, {ID: "inv-2", Cents: 800, Currency: "EUR0"}} {
		payload, err := json.Marshal(inv)
		if err != nil {
			return nil, err
		}
		msg := message.NewMessage(watermill.NewUUID(), payload)
		msg.Metadata.Set("tenant", "acme")
		msgs = append(msgs, msg)
		uuids[inv.ID] = msg.UUID
		fmt.Fprintf(out, "  published %s\n", payload)
	}
	return uuids, pub.Publish(topic, msgs...)
}

// awaitBilling prints billing's reports until one satisfies last.
func awaitBilling(ctx context.Context, events <-chan billed, out io.Writer, last func(billed) bool) error {
	timeout := time.After(waitTimeout)
	for {
		select {
		case b := <-events:
			if b.err != nil {
				fmt.Fprintf(out, "  billing: %s delivery %d failed: %v\n", b.id, b.attempt, b.err)
			} else {
				fmt.Fprintf(out, "  billing: %s billed\n", b.id)
			}
			if last(b) {
				return nil
			}
		case <-timeout:
			return fmt.Errorf("billing: no progress after %v", waitTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// awaitDeadLetter waits until the dead-letter topic dead holds a dead letter,
// and returns the oldest.
func awaitDeadLetter(ctx context.Context, in relay.Inspector, dead string) (relay.DeadLetter, error) {
	deadline := time.Now().Add(waitTimeout)
	for {
		for dl, err := range in.DeadLetters(ctx, dead, relay.DeadLetterFilter{Limit: 1}) {
			if err == nil {
				return dl, nil
			}
			if !errors.Is(err, relay.ErrUnknownTopic) { // not yet written: wait
				return relay.DeadLetter{}, err
			}
		}
		if time.Now().After(deadline) {
			return relay.DeadLetter{}, fmt.Errorf("no dead letter on %q after %v", dead, waitTimeout)
		}
		select {
		case <-ctx.Done():
			return relay.DeadLetter{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// printDeadLetter shows everything a dead letter carries. sent maps invoice
// ids to the UUIDs they were published with.
func printDeadLetter(out io.Writer, dl relay.DeadLetter, sent map[string]string) {
	fmt.Fprintf(out, "  dead letter: %s\n", dl.Payload)
	fmt.Fprintf(out, "  from %s (id %s) after %d attempts: %s\n", dl.SourceTopic, dl.SourceID, dl.Attempts, dl.Reason)
	var inv invoice
	_ = json.Unmarshal(dl.Payload, &inv) // only to name the UUID check
	keptUUID := "the UUID it was published with"
	if dl.UUID != sent[inv.ID] {
		keptUUID = "a UUID other than the published one (" + dl.UUID + ")"
	}
	fmt.Fprintf(out, "  uuid: %s\n", keptUUID)

	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	relayKeys := []struct{ key, name string }{
		{relay.MetadataSourceTopic, "relay.MetadataSourceTopic"},
		{relay.MetadataSourceID, "relay.MetadataSourceID"},
		{relay.MetadataAttempts, "relay.MetadataAttempts"},
		{relay.MetadataReason, "relay.MetadataReason"},
	}
	rest := maps.Clone(dl.Metadata)
	for _, k := range relayKeys {
		fmt.Fprintf(w, "  %s\t%s\t(%s)\n", k.key, dl.Metadata[k.key], k.name)
		delete(rest, k.key)
	}
	for _, k := range slices.Sorted(maps.Keys(rest)) {
		fmt.Fprintf(w, "  %s\t%s\t(kept from the source message)\n", k, rest[k])
	}
	_ = w.Flush()
}

// fixCurrency is the operator's fix: the typo "EUR0" becomes "EUR".
func fixCurrency(payload []byte) ([]byte, error) {
	var inv invoice
	if err := json.Unmarshal(payload, &inv); err != nil {
		return nil, err
	}
	if inv.Currency != "EUR0" {
		return nil, errors.New("no known fix for currency " + inv.Currency)
	}
	inv.Currency = "EUR"
	return json.Marshal(inv)
}
