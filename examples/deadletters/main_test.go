package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay/examples/internal/exampleenv"
	"github.com/go-relay/relay/internal/testkit/natstest"
	"github.com/go-relay/relay/natsjs"
)

// TestDeadLetters runs the example on every backend and checks the story it
// tells: the bad invoice fails max deliver times, shows up on the dead-letter
// topic with its metadata, and is billed once redriven.
func TestDeadLetters(t *testing.T) {
	tests := []struct {
		name  string
		cfg   func(t *testing.T) config
		redis bool
	}{
		{name: "memory", cfg: func(*testing.T) config { return config{Flags: exampleenv.Flags{Backend: "memory"}} }},
		{name: "embedded NATS", cfg: func(*testing.T) config { return config{Flags: exampleenv.Flags{Backend: "nats"}} }},
		{name: "NATS given by -nats-url", cfg: func(t *testing.T) config {
			return config{Flags: exampleenv.Flags{Backend: "nats", NATSURL: natstest.Start(t).URL()}}
		}},
		{name: "local redis-server", cfg: func(*testing.T) config { return config{Flags: exampleenv.Flags{Backend: "redis"}} }, redis: true},
	}
	story := []string{
		"billing: inv-1 billed",
		`billing: inv-2 delivery 3 failed: unknown currency "EUR0"`,
		`dead letter: {"id":"inv-2","cents":800,"currency":"EUR0"}`,
		`after 3 attempts: unknown currency "EUR0"`,
		"uuid: the UUID it was published with",
		"topic_poisoned ",
		"relay_source_id ",
		"relay_attempts   3",
		`reason_poisoned  unknown currency "EUR0"`,
		"tenant           acme",
		`fixed:     {"id":"inv-2","cents":800,"currency":"EUR"}`,
		"then removed the dead letter",
		"billing: inv-2 billed",
		"now holds 0 dead letters",
		"2 invoices billed, 1 of them after a redrive",
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.redis {
				exampleenv.RequireRedisServer(t)
			}
			var out bytes.Buffer
			if err := run(context.Background(), tt.cfg(t), &out); err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			exampleenv.WantInOrder(t, out.String(), story)
			if n := strings.Count(out.String(), "billing: inv-2 delivery"); n != 3 {
				t.Errorf("inv-2 failed %d times, want 3 (max deliver):\n%s", n, out.String())
			}
		})
	}
}

// TestRedrivenDeadLetterIsRemoved: the example redrives with
// relay.Inspector, which removes the dead letter once its copy is stored, so
// the dead-letter stream holds nothing after the run (issue 13 item 3; it used
// to ack it as group "ops", and the stream kept it).
func TestRedrivenDeadLetterIsRemoved(t *testing.T) {
	srv := natstest.Start(t)
	var out bytes.Buffer
	if err := run(context.Background(), config{Flags: exampleenv.Flags{Backend: "nats", NATSURL: srv.URL()}}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	m := regexp.MustCompile(`the producer publishes to "([^"]+)"`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no topic in the output:\n%s", out.String())
	}
	dead := m[1] + ".dead"
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, natsjs.StreamName(dead))
	if err != nil {
		t.Fatalf("the stream of %q: %v", dead, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("the stream of %q holds %d messages after the redrive, want 0", dead, info.State.Msgs)
	}
}

func TestFixCurrency(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "the typo is fixed", in: `{"id":"i","cents":1,"currency":"EUR0"}`, want: `{"id":"i","cents":1,"currency":"EUR"}`},
		{name: "another currency has no fix", in: `{"id":"i","cents":1,"currency":"GBP"}`, wantErr: true},
		{name: "not JSON", in: `{`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fixCurrency([]byte(tt.in))
			if (err != nil) != tt.wantErr || string(got) != tt.want {
				t.Fatalf("fixCurrency(%s) = %s, %v; want %s, error %t", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
