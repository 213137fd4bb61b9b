// Command pipeline is relay's main demonstration: an order-processing flow run
// by a Watermill router over a real broker, which checks at the end, id by id,
// that nothing was lost.
//
// The flow:
//
//	orders.placed ──validate (group "validator")──▶ orders.accepted ──┬─ bill  (group "billing")
//	      │                                                            └─ audit (group "audit")
//	      └─ poison orders, after max deliver ──▶ orders.placed.dead ── count (group "ops")
//
// The validate handler fails a share of orders once (-fail-rate: they succeed
// when redelivered) and always fails another share (-poison: they end in the
// dead-letter topic). Retries are the backend's native ones rather than
// Watermill's Retry middleware: Retry sleeps inside the handler, holding the
// message and a worker, and forgets the attempt count if the process dies,
// while native retries leave the message on the broker, redeliver it after a
// backoff to any consumer of the group, count deliveries on the server and
// dead-letter it after max deliver. Recoverer turns a handler panic into an
// error, which the backend then retries, and relay.NackReason hands the
// handler's error to the backend, so that the dead letter records why.
//
// By default the broker is NATS JetStream embedded in this process (the real
// nats-server, file storage in a temporary directory, loopback only): nothing to
// install. See -help for the other backends.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-relay/relay/examples/internal/exampleenv"
)

type config struct {
	exampleenv.Flags // -backend, -nats-url, -redis-url
	n                int
	failRate         float64
	poison           float64
	concurrency      int
	seed             uint64
	timeout          time.Duration
	metricsAddr      string
	delayShare       float64       // share of orders published with a delay
	delayFor         time.Duration // their delay
}

func main() {
	var cfg config
	cfg.Register(flag.CommandLine, "nats")
	flag.IntVar(&cfg.n, "n", 10000, "orders to publish")
	flag.Float64Var(&cfg.failRate, "fail-rate", 0.03, "share of orders whose validation fails once, then succeeds on redelivery")
	flag.Float64Var(&cfg.poison, "poison", 0.005, "share of orders whose validation always fails (they end in the dead-letter topic)")
	flag.Float64Var(&cfg.delayShare, "delay-share", 0, "share of orders published with Watermill's delay.For(-delay), delivered no earlier than their due time (Watermill writes it to the second; on NATS: nats-server 2.12+)")
	flag.DurationVar(&cfg.delayFor, "delay", time.Second, "delay of the -delay-share orders")
	flag.IntVar(&cfg.concurrency, "concurrency", 8, "handlers running at once per subscription")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the generated orders: the same seed gives the same run")
	flag.DurationVar(&cfg.timeout, "timeout", 2*time.Minute, "give up waiting for the flow to finish after this long")
	flag.StringVar(&cfg.metricsAddr, "metrics-addr", "", "serve the brokers' OpenTelemetry metrics for Prometheus at http://<addr>/metrics while the job runs (e.g. :9464)")
	flag.Parse()
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(2)
	}

	// Ctrl-C (or SIGTERM) stops the run gracefully: the router and brokers
	// close, unfinished messages stay on the broker for redelivery.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res, err := run(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
	switch {
	case res.lost > 0, res.early > 0:
		os.Exit(1)
	case res.interrupted:
		os.Exit(130) // the shell's code for a run ended by Ctrl-C
	}
}

func (c config) validate() error {
	switch {
	case c.n < 1:
		return errors.New("-n must be at least 1")
	case c.failRate < 0 || c.poison < 0 || c.failRate+c.poison > 1:
		return errors.New("-fail-rate and -poison must be shares between 0 and 1, adding up to at most 1")
	case c.concurrency < 1:
		return errors.New("-concurrency must be at least 1")
	case c.delayShare < 0 || c.delayShare > 1:
		return errors.New("-delay-share must be a share between 0 and 1")
	case c.delayShare > 0 && c.delayFor <= 0:
		return errors.New("-delay must be positive with -delay-share")
	case c.timeout <= 0:
		return errors.New("-timeout must be positive")
	}
	return nil
}
