package exampleenv

import (
	"context"
	"strings"
	"testing"

	"github.com/go-relay/relay/internal/testkit/natstest"
)

func TestOpen(t *testing.T) {
	tests := []struct {
		name   string
		flags  func(t *testing.T) Flags
		redis  bool
		desc   string
		shared bool
	}{
		{name: "memory", flags: func(*testing.T) Flags { return Flags{Backend: Memory} }, desc: "memory (in-process hub)"},
		{name: "embedded NATS", flags: func(*testing.T) Flags { return Flags{Backend: NATS} },
			desc: "NATS JetStream (embedded nats-server)"},
		{name: "NATS given by -nats-url", flags: func(t *testing.T) Flags {
			return Flags{Backend: NATS, NATSURL: natstest.Start(t).URL()}
		}, desc: "NATS JetStream at nats://", shared: true},
		{name: "local redis-server", flags: func(*testing.T) Flags { return Flags{Backend: Redis} }, redis: true,
			desc: "Redis Streams (local redis-server)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.redis {
				RequireRedisServer(t)
			}
			e, err := Open(tt.flags(t))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer e.Close()
			if !strings.HasPrefix(e.Desc, tt.desc) || e.Shared != tt.shared {
				t.Errorf("Desc %q, Shared %t; want %q..., %t", e.Desc, e.Shared, tt.desc, tt.shared)
			}
			if ns := e.Namespace("x"); (ns != "") != tt.shared || (ns != "" && !strings.HasPrefix(ns, "x-")) {
				t.Errorf("Namespace(%q) = %q with Shared %t", "x", ns, e.Shared)
			}
			switch e.Backend {
			case Memory:
				if e.Hub == nil {
					t.Fatal("no Hub")
				}
			case NATS:
				if _, err := e.JetStream.AccountInfo(context.Background()); err != nil {
					t.Fatalf("JetStream: %v", err)
				}
			case Redis:
				if err := e.Redis.Ping(context.Background()).Err(); err != nil {
					t.Fatalf("Redis: %v", err)
				}
			}
			e.Close()
			e.Close() // a second Close does nothing
		})
	}
}

func TestOpenUnknownBackend(t *testing.T) {
	if _, err := Open(Flags{Backend: "kafka"}); err == nil || !strings.Contains(err.Error(), `unknown backend "kafka"`) {
		t.Fatalf("Open with backend kafka: %v, want an unknown backend error", err)
	}
}

func TestOpenRedisUnreachable(t *testing.T) {
	_, err := Open(Flags{Backend: Redis, RedisURL: "redis://127.0.0.1:1/0"})
	if err == nil || !strings.Contains(err.Error(), "connect to Redis at 127.0.0.1:1") {
		t.Fatalf("Open with an unreachable Redis: %v, want a connect error", err)
	}
}
