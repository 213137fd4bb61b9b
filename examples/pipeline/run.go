package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/delay"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/examples/internal/exampleenv"
	"github.com/go-relay/relay/natsjs"
)

// order is the event the flow moves. Kind decides its fate in validation; a
// real service would of course not know it in advance.
type order struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	Cents    int    `json:"cents"`
	Kind     string `json:"kind"` // "ok", "flaky" (fails once) or "poison" (always fails)
	// Delay, when set, is how long after its publish the order is due:
	// published with Watermill's delay metadata (-delay-share, -delay).
	Delay time.Duration `json:"delay,omitempty"`
}

const placedAtKey = "placed_at" // metadata: when the order was published, Unix nanoseconds

// result is what a run found.
type result struct {
	published, lost int
	redelivered     int // validation attempts after the first, by the ledger
	validations     int // successful validations, duplicates included, by the ledger
	deadLettered    int // orders seen on the dead-letter topic, by the ledger
	meterMismatch   bool
	early           int  // delayed orders delivered before their due time
	completed       int  // orders billed and audited, or dead-lettered: what the rate counts
	interrupted     bool // Ctrl-C: the run ended early and lost was not checked
}

// generate returns n orders drawn from seed: the same seed gives the same orders.
func generate(cfg config) []order {
	r := rand.New(rand.NewPCG(cfg.seed, 0x5eed))
	orders := make([]order, cfg.n)
	for i := range orders {
		kind, x := "ok", r.Float64()
		switch {
		case x < cfg.poison:
			kind = "poison"
		case x < cfg.poison+cfg.failRate:
			kind = "flaky"
		}
		orders[i] = order{ID: fmt.Sprintf("order-%07d", i), Customer: fmt.Sprintf("customer-%03d", r.IntN(500)),
			Cents: 100 + r.IntN(100_000), Kind: kind}
		// Drawn only when asked for, so the default run stays the same.
		if cfg.delayShare > 0 && r.Float64() < cfg.delayShare {
			orders[i].Delay = cfg.delayFor
		}
	}
	return orders
}

// run publishes the orders, runs the flow until every order is accounted for
// (or ctx ends, or the timeout passes) and prints the summary to out.
func run(ctx context.Context, cfg config, out io.Writer) (result, error) {
	// Dead letters are expected here and counted in the summary, so the
	// backends log only errors.
	logger := exampleenv.Logger(false)
	m, err := newMeters(cfg.metricsAddr, out)
	if err != nil {
		return result{}, err
	}
	defer m.close()
	b, err := openBackend(cfg, settings{logger: logger, concurrency: cfg.concurrency, maxDeliver: 3,
		minBackoff: 20 * time.Millisecond, maxBackoff: 500 * time.Millisecond, meter: m.mp})
	if err != nil {
		return result{}, err
	}
	defer b.close()

	// A namespace per run keeps runs against a long-lived external server apart.
	ns := "pipeline" + strconv.FormatInt(time.Now().UnixNano(), 36)
	topics := flowTopics{placed: ns + ".orders.placed", accepted: ns + ".orders.accepted"}
	topics.dead = topics.placed + ".dead" // the backends' default dead-letter topic

	orders := generate(cfg)
	tr := newTracker()
	router, err := buildRouter(b, topics, tr)
	if err != nil {
		return result{}, err
	}
	routerDone := make(chan error, 1)
	go func() { routerDone <- router.Run(context.Background()) }()
	defer func() {
		_ = router.Close() // closes the handlers' subscribers; errors are reported by the router's logger
		select {
		case err := <-routerDone:
			if err != nil {
				fmt.Fprintln(out, "router:", err)
			}
		case <-time.After(time.Minute):
			fmt.Fprintln(out, "the router did not stop within a minute; exiting anyway")
		}
		_ = b.publisher.Close()
	}()
	select {
	case <-router.Running():
	case err := <-routerDone:
		return result{}, fmt.Errorf("router stopped at start: %w", err)
	}

	fmt.Fprintf(out, "pipeline: %d orders over %s (fail once %.1f%%, poison %.1f%%, concurrency %d)\n",
		cfg.n, b.desc, 100*cfg.failRate, 100*cfg.poison, cfg.concurrency)
	fmt.Fprintln(out, topicLine(b.env.Backend, topics.placed, topics.accepted, topics.dead))
	start := time.Now()
	prog := startProgress(out, tr, cfg.n)
	if err := publish(ctx, b.publisher, topics.placed, orders, tr); err != nil {
		prog.stop()
		return result{}, err
	}
	finished := tr.waitAll(ctx, orders, cfg.timeout)
	elapsed := time.Since(start)
	prog.stop()

	if ctx.Err() != nil {
		res := summarize(out, orders, tr, elapsed, false)
		fmt.Fprintln(out, "interrupted: losses not checked; the router and broker are closed and unfinished messages stay on the broker")
		res.interrupted = true
		return res, nil
	}
	res := summarize(out, orders, tr, elapsed, true)
	if err := printOutcomes(out, m, topics.placed, &res); err != nil {
		return res, err
	}
	switch {
	case !finished:
		fmt.Fprintf(out, "timed out after %v waiting for the flow to finish\n", cfg.timeout)
	default:
		if err := backendSummary(ctx, out, b.inspector, topics, len(tr.seen["dead"])); err != nil {
			return res, err
		}
	}
	return res, nil
}

// backendSummary prints what the backend itself holds once the flow is done,
// read with relay.Inspector (what the relay command shows): messages stored,
// dead letters, and each group's pending messages and lag, which must all
// come to 0. The last acknowledgements may still be on their way when the
// ledger is complete, so it waits a little for them. It returns an error when
// the backend's dead letters differ from the ledger's.
func backendSummary(ctx context.Context, out io.Writer, in relay.Inspector, topics flowTopics, dead int) error {
	var infos []relay.TopicInfo
	settled := func() bool {
		infos = infos[:0]
		for _, t := range []string{topics.placed, topics.accepted} {
			info, err := in.Topic(ctx, t)
			if err != nil {
				return false
			}
			infos = append(infos, info)
		}
		for _, info := range infos {
			for _, g := range info.Groups {
				if g.Pending > 0 || (g.LagKnown && g.Lag > 0) {
					return false
				}
			}
		}
		return true
	}
	for deadline := time.Now().Add(5 * time.Second); !settled() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if len(infos) != 2 {
		return fmt.Errorf("the backend's counts: topics not readable")
	}
	fmt.Fprintln(out, "\n  as the backend counts it (relay.Inspector, as `relay stats` shows):")
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, info := range infos {
		var groups []string
		for _, g := range info.Groups {
			lag := "?"
			if g.LagKnown {
				lag = strconv.FormatUint(g.Lag, 10)
			}
			groups = append(groups, fmt.Sprintf("%s pending %d lag %s", g.Group, g.Pending, lag))
		}
		fmt.Fprintf(w, "  %s\tstored %d\tdead letters %d\t%s\n", shortTopic(info.Topic), info.Messages, info.DeadLetters, strings.Join(groups, ", "))
	}
	_ = w.Flush()
	if got := infos[0].DeadLetters; got != uint64(dead) {
		return fmt.Errorf("the backend holds %d dead letters on %s, the ledger counted %d", got, topics.dead, dead)
	}
	return nil
}

// shortTopic drops the run's namespace from a topic.
func shortTopic(t string) string {
	if _, rest, ok := strings.Cut(t, "."); ok {
		return rest
	}
	return t
}

type flowTopics struct{ placed, accepted, dead string }

// topicLine names the run's topics and, on NATS, the stream that holds each:
// natsjs.StreamName(topic), the name `nats stream ls` and `nats stream info`
// show (a dotted topic gets a rewritten name with a hash).
func topicLine(backend string, topics ...string) string {
	parts := make([]string, len(topics))
	for i, t := range topics {
		parts[i] = t
		if backend == exampleenv.NATS {
			parts[i] += " (stream " + natsjs.StreamName(t) + ")"
		}
	}
	return "topics: " + strings.Join(parts, ", ")
}

func buildRouter(b *backend, topics flowTopics, tr *tracker) (*message.Router, error) {
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return nil, err
	}
	// NackReason carries each handler error to the backend, so dead letters
	// say why and relay.Permanent errors skip the remaining attempts.
	router.AddMiddleware(relay.NackReason, middleware.Recoverer)
	subs := map[string]message.Subscriber{}
	for _, group := range []string{"validator", "billing", "audit", "ops"} {
		if subs[group], err = b.subscriber(group); err != nil {
			return nil, fmt.Errorf("subscriber for group %q: %w", group, err)
		}
	}
	router.AddHandler("validate", topics.placed, subs["validator"], topics.accepted, b.publisher, tr.validate)
	router.AddConsumerHandler("bill", topics.accepted, subs["billing"], tr.stage("billed"))
	router.AddConsumerHandler("audit", topics.accepted, subs["audit"], tr.stage("audited"))
	router.AddConsumerHandler("dead-letters", topics.dead, subs["ops"], tr.stage("dead"))
	return router, nil
}

// publish sends the orders in batches of 100: Watermill's variadic Publish,
// which the backends pipeline.
func publish(ctx context.Context, pub message.Publisher, topic string, orders []order, tr *tracker) error {
	const batch = 100
	for i := 0; i < len(orders); i += batch {
		if ctx.Err() != nil {
			return nil
		}
		msgs := make([]*message.Message, 0, batch)
		for _, o := range orders[i:min(i+batch, len(orders))] {
			payload, err := json.Marshal(o)
			if err != nil {
				return err
			}
			msg := message.NewMessage(watermill.NewUUID(), payload)
			msg.Metadata.Set(placedAtKey, strconv.FormatInt(time.Now().UnixNano(), 10))
			if o.Delay > 0 {
				// Watermill's own delay metadata: relay's publishers honour it.
				delay.Message(msg, delay.For(o.Delay))
			}
			msgs = append(msgs, msg)
		}
		if err := pub.Publish(topic, msgs...); err != nil {
			return fmt.Errorf("publish orders %d..%d: %w", i, i+len(msgs)-1, err)
		}
		tr.published(len(msgs))
	}
	return nil
}
