package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/go-relay/relay/internal/natstest"
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
			cfg:  func(*testing.T) config { return config{backend: "memory"} },
			want: []string{"retries: by retrier.New around the plain queue"},
		},
		{
			name: "embedded NATS",
			cfg:  func(*testing.T) config { return config{backend: "nats"} },
			want: []string{"retries: native (HandlesRetries() is true)"},
		},
		{
			name: "NATS given by -nats-url",
			cfg: func(t *testing.T) config {
				return config{backend: "nats", natsURL: natstest.Start(t).URL()}
			},
			want: []string{"retries: native (HandlesRetries() is true)"},
		},
		{
			name:  "local redis-server",
			cfg:   func(*testing.T) config { return config{backend: "redis"} },
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
				requireRedisServer(t)
			}
			var out bytes.Buffer
			if err := run(context.Background(), tt.cfg(t), &out); err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			wantInOrder(t, out.String(), append(tt.want, story...))
			if strings.Contains(out.String(), "attempt 2 failed: unknown customer") {
				t.Errorf("a permanent failure was retried:\n%s", out.String())
			}
		})
	}
}

func TestUnknownBackend(t *testing.T) {
	err := run(context.Background(), config{backend: "kafka"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `unknown backend "kafka"`) {
		t.Fatalf("run with backend kafka: %v, want an unknown backend error", err)
	}
}

// requireRedisServer skips the test without redis-server on PATH, except
// under CI=true, where the server must be there.
func requireRedisServer(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not on PATH (CI must install it)")
		}
		t.Skip("redis-server is not on PATH: install it to run this case")
	}
}

// wantInOrder fails the test unless every string of want is found in a line
// of out, each in a later line than the one before.
func wantInOrder(t *testing.T, out string, want []string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	i := 0
	for _, w := range want {
		for i < len(lines) && !strings.Contains(lines[i], w) {
			i++
		}
		if i == len(lines) {
			t.Fatalf("output lacks %q (in this order):\n%s", w, out)
		}
		i++
	}
}
