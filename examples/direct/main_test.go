package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/go-relay/relay/examples/internal/exampleenv"
	"github.com/go-relay/relay/internal/testkit/natstest"
)

// TestDirect runs the example on every backend and checks that each order met
// its fate, in order.
func TestDirect(t *testing.T) {
	tests := []struct {
		name  string
		cfg   func(t *testing.T) config
		redis bool
		want  []string // lines expected in this order
	}{
		{
			name: "memory behind the retrier",
			cfg:  func(*testing.T) config { return config{Flags: exampleenv.Flags{Backend: "memory"}} },
			want: []string{"retries: by retrier.New around the plain queue"},
		},
		{
			name: "embedded NATS",
			cfg:  func(*testing.T) config { return config{Flags: exampleenv.Flags{Backend: "nats"}} },
			want: []string{"retries: native (HandlesRetries() is true)"},
		},
		{
			name: "NATS given by -nats-url",
			cfg: func(t *testing.T) config {
				return config{Flags: exampleenv.Flags{Backend: "nats", NATSURL: natstest.Start(t).URL()}}
			},
			want: []string{"retries: native (HandlesRetries() is true)"},
		},
		{
			name:  "local redis-server",
			cfg:   func(*testing.T) config { return config{Flags: exampleenv.Flags{Backend: "redis"}} },
			redis: true,
			want:  []string{"retries: native (HandlesRetries() is true)"},
		},
	}
	story := []string{
		"publish order-1",
		"  handler: attempt 1 ok",
		"publish order-2 (fails once)",
		"  handler: attempt 1 failed: stock service timed out",
		"  handler: attempt 2 ok",
		"publish order-3 (always fails)",
		"  handler: attempt 3 failed: payment gateway unavailable",
		`  dead letter on "`, // the topic is namespaced with -nats-url
		"publish order-4 (permanent failure)",
		"  handler: attempt 1 failed: unknown customer",
		`  dead letter on "`,
		"(ErrInvalidTopic: true)",
		"(ErrClosed: true)",
		"2 orders handled, 2 dead-lettered, nothing lost",
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
			exampleenv.WantInOrder(t, out.String(), append(tt.want, story...))
			if strings.Contains(out.String(), "attempt 2 failed: unknown customer") {
				t.Errorf("a permanent failure was retried:\n%s", out.String())
			}
		})
	}
}

func TestUnknownBackend(t *testing.T) {
	err := run(context.Background(), config{Flags: exampleenv.Flags{Backend: "kafka"}}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `unknown backend "kafka"`) {
		t.Fatalf("run with backend kafka: %v, want an unknown backend error", err)
	}
}
