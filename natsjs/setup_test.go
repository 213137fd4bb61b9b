package natsjs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// relay called CreateOrUpdateStream: a stream of the topic's name that
// another application had made (subjects payments and payments.>, max age,
// max bytes, discard new) was rewritten to relay's settings, and the other
// application's publishes to payments.eu failed. An existing stream that
// captures the topic must be used as it is.
func TestExistingStreamIsNotRewritten(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	topic := natstest.Topic(t, "payments")
	theirs := jetstream.StreamConfig{
		Name:     natsjs.StreamName(topic),
		Subjects: []string{topic, topic + ".>"},
		Storage:  jetstream.FileStorage,
		MaxAge:   24 * time.Hour,
		MaxBytes: 64 << 20,
		Discard:  jetstream.DiscardNew,
	}
	if _, err := js.CreateStream(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	b := newBroker(t, js)
	handled := make(chan []byte, 1)
	if err := b.Subscribe(topic, func(p []byte) error { handled <- p; return nil }); err != nil {
		t.Fatal(err)
	}
	publish(t, b, topic, []byte("paid"))
	select {
	case p := <-handled:
		if string(p) != "paid" {
			t.Errorf("handled %q, want %q", p, "paid")
		}
	case <-time.After(wait):
		t.Fatal("message on an existing stream not handled")
	}
	if _, err := js.Publish(ctx, topic+".eu", []byte("theirs")); err != nil {
		t.Errorf("the other application's publish to payments.eu: %v", err)
	}
	checkStreamConfig(t, js, theirs)
}

// A stream of the topic's name whose subjects do not capture the topic gets
// the topic added to them, and nothing else changed.
func TestExistingStreamWithoutTheTopicGetsOnlyItsSubject(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	topic := natstest.Topic(t, "audit")
	theirs := jetstream.StreamConfig{
		Name:     natsjs.StreamName(topic),
		Subjects: []string{topic + ".log"},
		Storage:  jetstream.FileStorage,
		MaxAge:   time.Hour,
		MaxMsgs:  1000,
	}
	if _, err := js.CreateStream(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	b := newBroker(t, js)
	publish(t, b, topic, []byte("seen"))
	theirs.Subjects = append(theirs.Subjects, topic)
	checkStreamConfig(t, js, theirs)
}

// Limits an operator set on relay's own stream survive the next Broker.
func TestOperatorLimitsOnRelaysStreamSurvive(t *testing.T) {
	s := natstest.Start(t)
	_, js := connect(t, s)
	topic := natstest.Topic(t, "shipments")
	publish(t, newBroker(t, js), topic, []byte("one"))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	stream, err := js.Stream(ctx, natsjs.StreamName(topic))
	if err != nil {
		t.Fatal(err)
	}
	edited := stream.CachedInfo().Config
	edited.MaxAge = 48 * time.Hour
	edited.MaxMsgs = 5000
	if _, err := js.UpdateStream(ctx, edited); err != nil {
		t.Fatal(err) // the operator's `nats stream edit`
	}
	publish(t, newBroker(t, js), topic, []byte("two"))
	checkStreamConfig(t, js, edited)
}

// checkStreamConfig fails t unless the stream of want's name has want's
// subjects and limits.
func checkStreamConfig(t *testing.T, js jetstream.JetStream, want jetstream.StreamConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	stream, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream %q is gone", want.Name)
	}
	if err != nil {
		t.Fatal(err)
	}
	got := stream.CachedInfo().Config
	if len(got.Subjects) != len(want.Subjects) {
		t.Errorf("stream %q subjects %q, want %q", want.Name, got.Subjects, want.Subjects)
	} else {
		for i := range got.Subjects {
			if got.Subjects[i] != want.Subjects[i] {
				t.Errorf("stream %q subjects %q, want %q", want.Name, got.Subjects, want.Subjects)
				break
			}
		}
	}
	if got.MaxAge != want.MaxAge || got.Discard != want.Discard || (want.MaxBytes != 0 && got.MaxBytes != want.MaxBytes) || (want.MaxMsgs != 0 && got.MaxMsgs != want.MaxMsgs) {
		t.Errorf("stream %q limits max_age %v, discard %v, max_bytes %d, max_msgs %d; want %v, %v, %d, %d",
			want.Name, got.MaxAge, got.Discard, got.MaxBytes, got.MaxMsgs, want.MaxAge, want.Discard, want.MaxBytes, want.MaxMsgs)
	}
}

func TestSubjectMatches(t *testing.T) {
	cases := []struct {
		filter, subject string
		want            bool
	}{
		{"payments", "payments", true},
		{"payments", "payments.eu", false},
		{"payments.>", "payments.eu", true},
		{"payments.>", "payments.eu.de", true},
		{"payments.>", "payments", false},
		{"payments.*", "payments.eu", true},
		{"payments.*", "payments.eu.de", false},
		{"*.eu", "payments.eu", true},
		{">", "anything.at.all", true},
		{"a.b", "a", false},
	}
	for _, c := range cases {
		if got := natsjs.SubjectMatches(c.filter, c.subject); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", c.filter, c.subject, got, c.want)
		}
	}
}

// A server without JetStream looked like one restarting: Publish waited
// for its context and Subscribe for the full request timeout (30 s),
// retrying. Without JetStream nothing will ever work: both say so at once,
// with an error wrapping jetstream.ErrJetStreamNotEnabled.
func TestServerWithoutJetStreamIsSaidAtOnce(t *testing.T) {
	s := natstest.StartEmbedded(t, natstest.Config{NoJetStream: true})
	_, js := connect(t, s)
	b := newBroker(t, js)
	const soon = 5 * time.Second // well below the 30 s request timeout
	ctx, cancel := context.WithTimeout(context.Background(), 2*soon)
	defer cancel()
	start := time.Now()
	err := b.Publish(ctx, "orders", []byte("x"))
	if !errors.Is(err, jetstream.ErrJetStreamNotEnabled) || time.Since(start) > soon {
		t.Errorf("Publish = %v after %v, want ErrJetStreamNotEnabled within %v", err, time.Since(start), soon)
	}
	start = time.Now()
	err = b.Subscribe("orders", func([]byte) error { return nil })
	if !errors.Is(err, jetstream.ErrJetStreamNotEnabled) || time.Since(start) > soon {
		t.Errorf("Subscribe = %v after %v, want ErrJetStreamNotEnabled within %v", err, time.Since(start), soon)
	}
}
