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

// redrivenFromKey is the metadata key, set on a redriven message, that holds
// the UUID of the dead letter it replaces.
const redrivenFromKey = "redriven_from"

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

	fmt.Fprintf(out, "\n2. the ops tool reads %q (Watermill face, group \"ops\")\n", dead)
	ops, err := be.subscriber("ops")
	if err != nil {
		return err
	}
	defer ops.Close()
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadLetters, err := ops.Subscribe(subCtx, dead)
	if err != nil {
		return err
	}
	var dl *message.Message
	select {
	case dl = <-deadLetters:
	case <-time.After(waitTimeout):
		return fmt.Errorf("no dead letter on %q after %v", dead, waitTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	printDeadLetter(out, dl, sent)

	fmt.Fprintf(out, "\n3. the ops tool fixes it and redrives it to its source topic\n")
	source, err := redrive(be.publisher, dl, fixCurrency, out)
	if err != nil {
		dl.Nack() // left on the dead-letter topic, redelivered to the tool later
		return err
	}
	dl.Ack() // only now: the fixed message is stored on the source topic
	// An ack settles the dead letter for the ops group only: the stream keeps
	// it (for other groups, and for audits) until its retention limits drop it.
	fmt.Fprintf(out, "  acked the dead letter: group \"ops\" is done with it; %q keeps it until its retention limits drop it\n", dead)
	if err := awaitBilling(ctx, events, out, func(b billed) bool { return b.id == "inv-2" && b.err == nil }); err != nil {
		return err
	}
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

// printDeadLetter shows everything a dead letter carries. sent maps invoice
// ids to the UUIDs they were published with.
func printDeadLetter(out io.Writer, dl *message.Message, sent map[string]string) {
	fmt.Fprintf(out, "  dead letter: %s\n", dl.Payload)
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
		fmt.Fprintf(w, "  %s\t%s\t(%s)\n", k.key, dl.Metadata.Get(k.key), k.name)
		delete(rest, k.key)
	}
	for _, k := range slices.Sorted(maps.Keys(rest)) {
		fmt.Fprintf(w, "  %s\t%s\t(kept from the source message)\n", k, rest[k])
	}
	_ = w.Flush()
}

// redrive publishes a fixed copy of dead letter dl to the topic it came from,
// and returns that topic. The copy is a new message: a new UUID, the source
// metadata without the dead-letter keys, and redrivenFromKey. It does not ack
// dl: that is the caller's, once redrive succeeded.
func redrive(pub message.Publisher, dl *message.Message, fix func([]byte) ([]byte, error), out io.Writer) (string, error) {
	source := dl.Metadata.Get(relay.MetadataSourceTopic)
	if source == "" {
		return "", fmt.Errorf("dead letter %s has no %s metadata: not written by relay", dl.UUID, relay.MetadataSourceTopic)
	}
	payload, err := fix(dl.Payload)
	if err != nil {
		return "", fmt.Errorf("fix dead letter %s: %w", dl.UUID, err)
	}
	msg := message.NewMessage(watermill.NewUUID(), payload)
	for k, v := range dl.Metadata {
		switch k {
		case relay.MetadataSourceTopic, relay.MetadataSourceID, relay.MetadataAttempts, relay.MetadataReason:
		default:
			msg.Metadata.Set(k, v)
		}
	}
	msg.Metadata.Set(redrivenFromKey, dl.UUID)
	if err := pub.Publish(source, msg); err != nil {
		return "", fmt.Errorf("redrive dead letter %s to %q: %w", dl.UUID, source, err)
	}
	fmt.Fprintf(out, "  fixed:     %s\n", payload)
	fmt.Fprintf(out, "  published to %q as a new message (new UUID, %s = the dead letter's UUID)\n", source, redrivenFromKey)
	return source, nil
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
