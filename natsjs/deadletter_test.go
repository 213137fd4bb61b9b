package natsjs_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// A dead letter's Nats-Msg-Id was built from group, stream and stream
// sequence. When an operator deletes the source stream and relay creates it
// again, sequences restart at 1: within the dead-letter stream's duplicate
// window the second poison message got the first one's id, JetStream stored
// nothing, and relay acked the source. Two poison messages, one dead letter.
func TestDeadLetterAfterStreamRecreationIsNotADuplicate(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "refunds")
	dead := deadLetters(t, js, topic)
	poison := func(payload string) {
		t.Helper()
		b := newBroker(t, js, natsjs.WithMaxDeliver(1))
		if err := b.Subscribe(topic, func([]byte) error { return errors.New("refund refused") }); err != nil {
			t.Fatal(err)
		}
		publish(t, b, topic, []byte(payload))
		dl := receive(t, dead, "dead letter of "+payload)
		dl.Ack()
		checkDeadLetter(t, dl, topic, "1", "1", "refund refused", []byte(payload))
		eventually(t, func() bool { return consumerSettled(t, js, topic, natsjs.DefaultGroup) }, "source acknowledged")
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	poison("first")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, natsjs.StreamName(topic)); err != nil {
		t.Fatal(err) // the operator's `nats stream rm`
	}
	poison("second") // relay creates the stream again: sequence 1 once more
}

// JetStream answers "duplicate" for every Nats-Msg-Id in a stream's
// duplicate window, even when the message of that id was deleted since.
// relay took the answer for a stored dead letter and acked the source: a
// dead letter whose earlier copy an operator removed (`nats stream rmm`) was
// lost. Here the dead-letter stream holds the id of the coming dead letter,
// its message deleted, when the source message is dead-lettered.
func TestDeadLetterAnsweredAsDuplicateOfADeletedMessageIsStored(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "invoices")
	b := newBroker(t, js, natsjs.WithMaxDeliver(1))
	publish(t, b, topic, []byte("poison"))

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     natsjs.StreamName(topic + ".dead"),
		Subjects: []string{topic + ".dead"},
		Storage:  jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	source, err := js.Stream(ctx, natsjs.StreamName(topic))
	if err != nil {
		t.Fatal(err)
	}
	stored, err := source.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	id := natsjs.DeadLetterID(natsjs.DefaultGroup, topic, "1", stored.Time)
	decoy := nats.NewMsg(topic + ".dead")
	decoy.Header.Set(nats.MsgIdHdr, id)
	ack, err := js.PublishMsg(ctx, decoy)
	if err != nil {
		t.Fatal(err)
	}
	deadStream, err := js.Stream(ctx, ack.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := deadStream.DeleteMsg(ctx, ack.Sequence); err != nil {
		t.Fatal(err)
	}
	dead := deadLetters(t, js, topic)

	if err := b.Subscribe(topic, func([]byte) error { return errors.New("invoice refused") }); err != nil {
		t.Fatal(err)
	}
	dl := receive(t, dead, "dead letter of a message whose id was taken by a deleted one")
	dl.Ack()
	checkDeadLetter(t, dl, topic, "1", "1", "invoice refused", []byte("poison"))
	eventually(t, func() bool { return consumerSettled(t, js, topic, natsjs.DefaultGroup) }, "source acknowledged")
}

// deadLetterHeaders must bound what a dead letter adds, or an accepted
// message could be one whose dead letter never fits: the headers of the
// longest dead letter (longest topic, group, sequence, attempts and stored
// time, an empty reason) are measured here as nats.go writes them.
func TestDeadLetterHeadersBoundTheLongestDeadLetter(t *testing.T) {
	topic := strings.Repeat("t", relay.MaxTopicLength)
	const seq = "18446744073709551615"
	id := natsjs.DeadLetterID(strings.Repeat("g", 300), topic, seq, time.Unix(0, math.MinInt64))
	wire := "NATS/1.0\r\n"
	for _, kv := range [][2]string{
		{relay.MetadataSourceTopic, topic},
		{relay.MetadataSourceID, seq},
		{relay.MetadataAttempts, strconv.Itoa(math.MinInt64)},
		{relay.MetadataReason, ""},
		{nats.MsgIdHdr, id},
	} {
		wire += kv[0] + ": " + kv[1] + "\r\n"
	}
	wire += "\r\n"
	if bound := natsjs.DeadLetterHeaders(topic); len(wire) > bound {
		t.Errorf("the longest dead letter adds %d bytes of headers, deadLetterHeaders says at most %d", len(wire), bound)
	}
}

// On a server with a small max_payload, the room kept for a dead letter
// (half of max_payload) was less than a dead letter of a long topic or group
// needs: the largest accepted message ran its handler again and again and
// never got a dead letter. Every message Publish accepts must be
// dead-lettered, whatever the topic and group; on a server too small for
// that, Publish refuses with ErrPayloadTooLarge.
func TestDeadLetterOfLargestAcceptedMessageOnSmallServerLands(t *testing.T) {
	// The longest topic whose dead-letter reader's own dead-letter topic,
	// topic+".dead.dead", is valid.
	long := strings.Repeat("t", relay.MaxTopicLength-len(".dead.dead"))
	cases := []struct {
		name       string
		maxPayload int32
		topic      string
		group      string
	}{
		{"max_payload 700, short topic and group", 700, "orders", "billing"},
		{"max_payload 700, long topic, short group", 700, long, "billing"},
		{"max_payload 800, long topic, 100-byte group", 800, long, strings.Repeat("g", 100)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := natstest.StartEmbedded(t, natstest.Config{MaxPayload: c.maxPayload})
			_, js := connect(t, s)
			b := newBroker(t, js, natsjs.WithMaxDeliver(1), natsjs.WithGroup(c.group))
			payload := largestAccepted(t, b, c.topic, int(c.maxPayload))
			if payload == nil {
				return // refusing every message keeps the promise too
			}
			dead := deadLetters(t, js, c.topic)
			longReason := strings.Repeat("the reason is long ", 100)
			if err := b.Subscribe(c.topic, func([]byte) error { return errors.New(longReason) }); err != nil {
				t.Fatal(err)
			}
			dl := receive(t, dead, "dead letter of the largest accepted message")
			dl.Ack()
			if !bytes.Equal(dl.Payload, payload) {
				t.Errorf("dead letter payload of %d bytes, want %d", len(dl.Payload), len(payload))
			}
			if reason := dl.Metadata.Get(relay.MetadataReason); len(reason) < natsjs.MinDeadLetterReason-len("...") {
				t.Errorf("dead letter reason %q, want at least %d bytes of it", reason, natsjs.MinDeadLetterReason)
			}
		})
	}
}

// largestAccepted publishes, and returns, the largest payload that b's
// Publish accepts on topic, at most limit bytes, or nil if it accepts none.
// A refused payload is refused before anything is sent, so only the one
// returned is stored.
func largestAccepted(t *testing.T, b *natsjs.Broker, topic string, limit int) []byte {
	t.Helper()
	for size := limit; size > 0; size-- {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		payload := bytes.Repeat([]byte("p"), size)
		err := b.Publish(ctx, topic, payload)
		cancel()
		switch {
		case err == nil:
			return payload
		case !errors.Is(err, relay.ErrPayloadTooLarge):
			t.Fatalf("Publish(%d bytes) = %v, want nil or ErrPayloadTooLarge", size, err)
		}
	}
	return nil
}

// JetStream stores at most 64 KiB of headers. A 70 KB handler error was cut
// only to fit max_payload, so the dead letter failed with err_code 10097 on
// every attempt and never landed; metadata of 70 KB failed the same way at
// Publish, untyped and after sending.
func TestDeadLetterAndMetadataFitJetStreamsHeaderLimit(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "reports")

	t.Run("a 70 KB reason is cut to fit", func(t *testing.T) {
		dead := deadLetters(t, js, topic)
		b := newBroker(t, js, natsjs.WithMaxDeliver(1))
		publish(t, b, topic, []byte("report"))
		huge := strings.Repeat("r", 70_000)
		if err := b.Subscribe(topic, func([]byte) error { return errors.New(huge) }); err != nil {
			t.Fatal(err)
		}
		dl := receive(t, dead, "dead letter with a 70 KB reason")
		dl.Ack()
		reason := dl.Metadata.Get(relay.MetadataReason)
		if !strings.HasPrefix(reason, "rrr") || !strings.HasSuffix(reason, "...") || len(reason) >= natsjs.MaxHeaderBytes {
			t.Errorf("dead letter reason of %d bytes, want the reason cut below %d", len(reason), natsjs.MaxHeaderBytes)
		}
	})

	t.Run("70 KB of metadata is refused before sending, and creates no stream", func(t *testing.T) {
		pub, err := natsjs.NewPublisher(js)
		if err != nil {
			t.Fatal(err)
		}
		m := message.NewMessage(watermill.NewUUID(), []byte("x"))
		m.Metadata.Set("notes", strings.Repeat("n", 70_000))
		if err := pub.Publish(natstest.Topic(t, "metadata-heavy"), m); !errors.Is(err, relay.ErrInvalidMetadata) {
			t.Errorf("Publish with 70 KB of metadata = %v, want ErrInvalidMetadata", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		// Nothing is created for a refused message: no stream either.
		if _, err := js.Stream(ctx, natsjs.StreamName(natstest.Topic(t, "metadata-heavy"))); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("after the refused publish, the topic's stream: %v, want none (jetstream.ErrStreamNotFound)", err)
		}
	})
}

// The seed let JetStream's MaxDeliver drop a failing message: no dead letter.
func TestDeadLetterAfterMaxDeliver(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "payments")
	dead := deadLetters(t, js, topic)
	b := newBroker(t, js, natsjs.WithMaxDeliver(3), natsjs.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	var calls atomic.Int32
	if err := b.Subscribe(topic, func([]byte) error {
		calls.Add(1)
		return errors.New("card declined")
	}); err != nil {
		t.Fatal(err)
	}
	payload := []byte("pay \x00\xff 10")
	publish(t, b, topic, payload)
	dl := receive(t, dead, "dead letter")
	dl.Ack()
	checkDeadLetter(t, dl, topic, "1", "3", "card declined", payload)
	if n := calls.Load(); n != 3 {
		t.Errorf("handler called %d times, want 3", n)
	}
	eventually(t, func() bool { return consumerSettled(t, js, topic, natsjs.DefaultGroup) }, "source message acknowledged after its dead letter")
}

// With the consumer's MaxDeliver set to max deliver (the seed), a consumer
// that dies during the last attempt leaves the message unacknowledged and the
// server never delivers it again. relay delivers it once more after the ack
// wait: the handler decides, and a failure is dead-lettered at once.
func TestConsumerDeathDuringLastAttemptIsHandledOnceMore(t *testing.T) {
	cases := []struct {
		name     string
		result   error
		wantDead bool
	}{
		{"the handler succeeds: acknowledged, no dead letter", nil, false},
		{"the handler fails: dead-lettered at once", errors.New("still failing"), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := natstest.Start(t)
			topic := natstest.Topic(t, "shipments")
			const ackWait = time.Second
			opts := []natsjs.Option{
				natsjs.WithGroup("shipping"),
				natsjs.WithMaxDeliver(2),
				natsjs.WithAckWait(ackWait),
				natsjs.WithBackoff(10*time.Millisecond, 20*time.Millisecond),
			}
			ncA, jsA := connect(t, s)
			a := newBroker(t, jsA, opts...)
			lastAttempt := make(chan struct{})
			release := make(chan struct{})
			var attemptsA atomic.Int32
			if err := a.Subscribe(topic, func([]byte) error {
				if attemptsA.Add(1) == 1 {
					return errors.New("first attempt fails")
				}
				close(lastAttempt)
				<-release // the consumer "dies" while its handler runs
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			_, js := connect(t, s)
			dead := deadLetters(t, js, topic)
			publish(t, newBroker(t, js, natsjs.WithGroup("producer")), topic, []byte("parcel"))
			select {
			case <-lastAttempt:
			case <-time.After(wait):
				t.Fatal("broker A did not get the last attempt")
			}
			ncA.Close() // A can neither ack nor extend its lease any more
			defer func() {
				close(release)
				_ = a.Close()
			}()

			_, jsB := connect(t, s)
			b := newBroker(t, jsB, opts...)
			var callsB atomic.Int32
			if err := b.Subscribe(topic, func([]byte) error { callsB.Add(1); return c.result }); err != nil {
				t.Fatal(err)
			}
			eventually(t, func() bool { return callsB.Load() > 0 }, "broker B handles the abandoned last attempt")
			if c.wantDead {
				dl := receive(t, dead, "dead letter of the failed extra attempt")
				dl.Ack()
				checkDeadLetter(t, dl, topic, "1", "3", "still failing", []byte("parcel"))
			} else {
				select {
				case dl := <-dead:
					t.Errorf("dead letter %q after a successful extra attempt", dl.Payload)
				case <-time.After(2 * ackWait):
				}
			}
			eventually(t, func() bool { return consumerSettled(t, js, topic, "shipping") }, "source message acknowledged")
			if n := callsB.Load(); n != 1 {
				t.Errorf("broker B's handler called %d times, want 1", n)
			}
		})
	}
}

// A message as large as Publish accepts gets a dead letter that fits, even
// with a long reason: the reason is cut. It guards against a dead letter
// refused as too large once its headers are added, which left the message
// redelivered for ever.
func TestDeadLetterOfLargestAcceptedMessageLands(t *testing.T) {
	s := natstest.Start(t, natstest.Config{MaxPayload: 64 << 10})
	nc, js := connect(t, s)
	limit := int(nc.MaxPayload()) // an external server has its own
	topic := natstest.Topic(t, "big")
	dead := deadLetters(t, js, topic)
	b := newBroker(t, js, natsjs.WithMaxDeliver(1))
	const headers = 10 + (len(natsjs.UUIDHeader) + 2 + 36 + 2) + (len("Nats-Msg-Id") + 2 + 36 + 2) + 2
	payload := bytes.Repeat([]byte("z"), limit-natsjs.DeadLetterReserve-headers)
	// Publish keeps DeadLetterReserve bytes free, and payload is the largest
	// it accepts: one byte more is refused, before anything is sent.
	probe := natstest.Topic(t, "probe")
	for _, n := range []int{limit - natsjs.DeadLetterReserve, len(payload) + 1} {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		err := b.Publish(ctx, probe, make([]byte, n))
		cancel()
		if !errors.Is(err, relay.ErrPayloadTooLarge) {
			t.Errorf("Publish of %d bytes (max_payload %d, DeadLetterReserve %d) = %v, want ErrPayloadTooLarge",
				n, limit, natsjs.DeadLetterReserve, err)
		}
	}
	publish(t, b, topic, payload)
	longReason := strings.Repeat("very long reason ", 1000)
	if err := b.Subscribe(topic, func([]byte) error { return errors.New(longReason) }); err != nil {
		t.Fatal(err)
	}
	dl := receive(t, dead, "dead letter of the largest message")
	dl.Ack()
	if !bytes.Equal(dl.Payload, payload) {
		t.Errorf("dead letter payload of %d bytes, want %d", len(dl.Payload), len(payload))
	}
	reason := dl.Metadata.Get(relay.MetadataReason)
	if !strings.HasPrefix(reason, "very long reason") || !strings.HasSuffix(reason, "...") || len(reason) >= len(longReason) {
		t.Errorf("dead letter reason of %d bytes (%.40q...), want the reason cut", len(reason), reason)
	}
	eventually(t, func() bool { return consumerSettled(t, js, topic, natsjs.DefaultGroup) }, "source acknowledged")
}
