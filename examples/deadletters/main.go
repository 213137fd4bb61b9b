// Command deadletters shows what to do with a message that ended in a
// dead-letter topic: read it, see why it failed, fix it and send it back
// (redrive it) to the topic it came from, where it is then processed.
//
// Three parties share one backend:
//
//   - a producer publishes invoices to "invoices" through the Watermill face
//     (message.Publisher), with a "tenant" metadata entry;
//   - the billing service consumes "invoices" through the byte-handler face
//     (relay.Broker, group "billing"). One invoice has a currency typo
//     ("EUR0"): billing rejects it, the backend redelivers it after a backoff,
//     and after max deliver (3) deliveries writes it to the dead-letter topic
//     "invoices.dead" and only then removes it from "invoices";
//   - an operator's tool, started afterwards, reads "invoices.dead" with the
//     backend's relay.Inspector (memory.NewInspector, natsjs.NewInspector,
//     redisstreams.NewInspector), which takes nothing from any group, as the
//     relay command does. A relay.DeadLetter shows, besides its payload, UUID
//     and source metadata, why it died: relay.MetadataSourceTopic
//     ("topic_poisoned"), relay.MetadataSourceID ("relay_source_id"),
//     relay.MetadataAttempts ("relay_attempts") and relay.MetadataReason
//     ("reason_poisoned", the handler's last error). The tool fixes the
//     payload and calls Inspector.Redrive, which publishes it to the source
//     topic as a new message and removes the dead letter only once that
//     publish is stored, so a crash in between duplicates it but never loses
//     it.
//
// The redriven message gets a new UUID (the dead letter it came from is
// named in relay.MetadataRedrivenFrom, "relay_redriven_from"): on NATS the
// UUID is also the Nats-Msg-Id, and JetStream silently drops a message whose
// id it saw within its duplicate window (two minutes by default), so a
// redrive that kept the UUID could be lost.
//
// Usage:
//
//	go run ./examples/deadletters                  # memory (default)
//	go run ./examples/deadletters -backend nats    # embedded nats-server, or -nats-url nats://host:4222
//	go run ./examples/deadletters -backend redis   # local redis-server from PATH, or -redis-url redis://host:6379/0
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-relay/relay/examples/internal/exampleenv"
)

type config struct {
	exampleenv.Flags // -backend, -nats-url, -redis-url
	verbose          bool
}

func main() {
	var cfg config
	cfg.Register(flag.CommandLine, "memory")
	flag.BoolVar(&cfg.verbose, "v", false, "log the backends' events (failed deliveries, dead letters) to stderr")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "deadletters:", err)
		os.Exit(1)
	}
}
