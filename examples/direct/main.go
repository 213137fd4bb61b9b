// Command direct shows relay's byte-handler API, [relay.Broker], used straight
// from Go: Publish a []byte, Subscribe a func([]byte) error, Close. It runs the
// same four orders on the backend of your choice and prints what happens to
// each:
//
//   - order-1 is handled at the first attempt;
//   - order-2 fails once and succeeds when redelivered after a backoff;
//   - order-3 always fails: after max deliver (3) attempts it goes to the
//     dead-letter topic "orders.dead", payload intact;
//   - order-4 fails with an error wrapping [relay.ErrPermanent]: it goes to
//     the dead-letter topic at once, without a retry.
//
// Then it shows two errors every backend returns the same way: an invalid
// topic ([relay.ErrInvalidTopic]) and a Publish after Close ([relay.ErrClosed]).
//
// Who retries depends on the backend, not on the program. The program always
// calls retrier.New on the broker it opened: natsjs and redisstreams retry and
// dead-letter natively, so retrier.New hands them back unchanged; the memory
// broker here is made with memory.WithNativeRetries(false), a plain queue that
// redelivers forever, so retrier.New wraps it in its retry loop (attempts,
// backoff, dead letters). The output is the same either way.
//
// Usage:
//
//	go run ./examples/direct                  # memory (default)
//	go run ./examples/direct -backend nats    # embedded nats-server, or -nats-url nats://host:4222
//	go run ./examples/direct -backend redis   # local redis-server from PATH, or -redis-url redis://host:6379/0
//
// -v logs the backends' own events (failed attempts, dead letters) to stderr.
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
	flag.BoolVar(&cfg.verbose, "v", false, "log the backends' events (failed attempts, dead letters) to stderr")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "direct:", err)
		os.Exit(1)
	}
}
