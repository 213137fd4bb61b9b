package redisstreams

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/lifecycle"
	"github.com/go-relay/relay/internal/telemetry"
	"github.com/go-relay/relay/internal/wm"
)

const pkg = "redisstreams"

const (
	// setupTimeout bounds group creation.
	setupTimeout = 10 * time.Second
	// stopTimeout bounds what a subscription's stop sends once its handlers
	// are done: the hand back of the entries read ahead, the last try of the
	// acks left, and the deletion of its consumer, all together.
	stopTimeout = time.Second
	// settleTimeout bounds one dead-letter write, which a handler's
	// settlement waits for.
	settleTimeout = 5 * time.Second
	// ackTimeout bounds one XACK or idle refresh, whose answers are short:
	// a stop waits for the one in flight.
	ackTimeout = 2 * time.Second
	// upkeepTimeout bounds one run of a subscription's upkeep: a claim, a
	// redelivery or the clean-up of idle consumers. A stop waits for the one
	// in flight, so it is as short as an ack's; one cut short by it is run
	// again later (what it claimed stays pending and is claimed again after
	// the claim timeout), so nothing is lost.
	upkeepTimeout = ackTimeout
	// readRetryMin and readRetryMax bound the pause after a failed
	// XREADGROUP, doubled per consecutive failure: no hot loop while Redis is
	// down, and a prompt resume once it is back.
	readRetryMin = 100 * time.Millisecond
	readRetryMax = 2 * time.Second
	// claimPage is the number of pending entries one XPENDING looks at.
	claimPage = 100
	// ackBatchMax is the largest number of ids in one XACK.
	ackBatchMax = 512
	// refreshBatchMax is the largest number of ids in one idle refresh.
	refreshBatchMax = 1000
	// idleConsumerFactor times max(claim timeout, block timeout) is how long
	// a consumer without pending entries must have been idle before the
	// clean-up removes it. A live consumer touches the server at least every
	// block timeout, so the margin is wide.
	idleConsumerFactor = 10
	// defaultBulkMax is Redis' default proto-max-bulk-len, the largest
	// string it takes in a command: assumed when CONFIG GET is refused.
	defaultBulkMax = 512 << 20
)

// engine is what the faces share: publishing and subscriptions, with the
// retry, dead-letter, claim, ack and shutdown logic written once.
type engine struct {
	client       redis.UniversalClient
	cfg          config
	consumerBase string

	subs *lifecycle.Registry[*subscription]
	// ctx is canceled when Shutdown begins, to cut short a Subscribe
	// setting up.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	names  map[string]int  // subscriptions made per topic, for consumer names
	groups map[string]bool // streams on which this value created or found the group
	w      *writer         // started by the first concurrent publish

	publishing atomic.Int64           // publish calls in flight
	lastTopic  atomic.Pointer[string] // the last topic validTopic accepted
	tel        *telemetry.Telemetry

	bulkMu  sync.Mutex   // one CONFIG GET at a time
	bulkMax atomic.Int64 // the server's proto-max-bulk-len once known, else 0

	moverOnce sync.Once // starts mover, or (at shutdown) forbids it
	mover     *mover    // moves due delayed entries; nil until needed
}

func newEngine(client redis.UniversalClient, opts []Option) (*engine, error) {
	if client == nil {
		return nil, fmt.Errorf("%s: %w: nil redis client", pkg, relay.ErrInvalidOption)
	}
	cfg, err := newConfig(opts)
	if err == nil {
		err = checkReplicaClient(client, cfg)
	}
	if err != nil {
		return nil, err
	}
	base := cfg.consumer
	if !cfg.consumerSet {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "relay"
		}
		base = host + "-" + watermill.NewShortUUID()
	}
	e := &engine{client: client, cfg: cfg, consumerBase: base,
		subs: lifecycle.NewRegistry[*subscription](), names: make(map[string]int),
		groups: make(map[string]bool)}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.tel = telemetry.New("redis", cfg.tel, telemetry.InspectorLag(&Inspector{client: client, cfg: cfg}))
	return e, nil
}

// bounded returns the client, or a view of it whose every call ends by ctx's
// deadline even when Redis does not answer. go-redis uses a context's
// deadline for socket reads and writes only when the client's
// ContextTimeoutEnabled is set; otherwise its ReadTimeout and WriteTimeout
// alone bound a call, and a hung server (SIGSTOP, a black-holed network)
// keeps it waiting for them, or for ever when they are off. A *redis.Client
// gets a WithTimeout clone with the time left, which shares its pool and
// hooks, made per call (about a microsecond) so that it has the hooks added
// since; other clients are returned as they are, and their own timeouts
// bound their calls.
func (e *engine) bounded(ctx context.Context) redis.UniversalClient {
	return boundedClient(ctx, e.client)
}

// boundedClient is [engine.bounded] for any client: the Inspector, which has
// no engine, bounds its calls the same way.
func boundedClient(ctx context.Context, client redis.UniversalClient) redis.UniversalClient {
	rc, ok := client.(*redis.Client)
	deadline, has := ctx.Deadline()
	if !ok || !has {
		return client
	}
	d := max(time.Until(deadline), time.Millisecond)
	o := rc.Options()
	if o.ContextTimeoutEnabled || o.ReadTimeout > 0 && o.ReadTimeout <= d && o.WriteTimeout > 0 && o.WriteTimeout <= d {
		return rc
	}
	return rc.WithTimeout(d)
}

// publish appends msgs to topic's stream, in one pipeline when there are
// several, and returns once Redis answered every XADD. A call made while no
// other is in flight sends its commands itself: a lone publisher pays one
// round trip and no hand-off. Concurrent calls go to the writer, which sends
// what queued up meanwhile in one pipeline (see [writer]).
//
// msgCtxs, when not nil, holds each message's own context (a Watermill
// batch), which its producer span continues; ctx bounds the call.
func (e *engine) publish(ctx context.Context, msgCtxs []context.Context, topic string, msgs ...delivery.Message) error {
	if e.subs.Closed() {
		return relay.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	r := &pubRequest{ctx: ctx}
	if len(msgs) == 1 {
		r.args = r.one[:]
	} else {
		r.args = make([]redis.XAddArgs, len(msgs))
	}
	var one [1]telemetry.Publish
	spans := one[:]
	if len(msgs) > 1 {
		spans = make([]telemetry.Publish, len(msgs))
	}
	err := e.encode(ctx, msgCtxs, topic, msgs, r, spans)
	if err == nil {
		err = e.sendRequest(ctx, r)
	}
	for i := range spans {
		spans[i].End(err)
	}
	return err
}

// validTopic is [relay.ValidateTopic], remembering the last topic it
// accepted, so that a publisher that keeps to one topic pays a string
// comparison per Publish instead of the rule's pass over every byte.
func (e *engine) validTopic(topic string) error {
	if p := e.lastTopic.Load(); p != nil && *p == topic {
		return nil
	}
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	t := topic // only a miss allocates
	e.lastTopic.Store(&t)
	return nil
}

// encode fills r with the XADD of each message, starting each one's
// producer span in spans.
func (e *engine) encode(ctx context.Context, msgCtxs []context.Context, topic string, msgs []delivery.Message, r *pubRequest, spans []telemetry.Publish) error {
	limit := e.bulkLimit(ctx)
	for i, m := range msgs {
		mctx := ctx
		if msgCtxs != nil {
			mctx = msgCtxs[i]
		}
		spans[i], m.Metadata = e.tel.StartPublish(mctx, topic, m.UUID, m.Metadata)
		values, err := encode(m)
		if err == nil {
			err = checkSize(values, limit)
		}
		if err != nil {
			if len(msgs) > 1 {
				err = fmt.Errorf("message %d of %d (uuid %q): %w", i+1, len(msgs), m.UUID, err)
			}
			return err
		}
		r.args[i] = redis.XAddArgs{Stream: streamKey(topic), Values: values, MaxLen: e.cfg.maxLen, Approx: true}
	}
	return nil
}

// sendRequest sends r itself or through the writer, and waits for Redis.
func (e *engine) sendRequest(ctx context.Context, r *pubRequest) error {
	var err error
	if e.publishing.Add(1) == 1 {
		err = e.send(ctx, r.args)
	} else {
		err = e.enqueue(r)
	}
	e.publishing.Add(-1)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// checkSize refuses an entry with a field value longer than limit, the
// server's proto-max-bulk-len: Redis would answer the XADD with an untyped
// protocol error, or cut the connection while it is being written.
func checkSize(values []any, limit int64) error {
	for i := 1; i < len(values); i += 2 {
		var n int
		switch v := values[i].(type) {
		case string:
			n = len(v)
		case []byte:
			n = len(v)
		}
		if int64(n) > limit {
			return fmt.Errorf("%w: %s field of %d bytes exceeds the server's proto-max-bulk-len of %d bytes",
				relay.ErrPayloadTooLarge, values[i-1], n, limit)
		}
	}
	return nil
}

// bulkLimit returns the server's proto-max-bulk-len, read with CONFIG GET on
// first use and kept. When Redis refuses the command (ACL, a managed Redis
// that renames or forbids CONFIG), it logs that once and keeps the default of
// 512 MiB; when Redis does not answer (down, ctx done), it returns the
// default for this call and asks again next time.
func (e *engine) bulkLimit(ctx context.Context) int64 {
	if n := e.bulkMax.Load(); n > 0 {
		return n
	}
	e.bulkMu.Lock()
	defer e.bulkMu.Unlock()
	if n := e.bulkMax.Load(); n > 0 {
		return n
	}
	cfg, err := e.client.ConfigGet(ctx, "proto-max-bulk-len").Result()
	var rerr redis.Error
	if err != nil && !errors.As(err, &rerr) {
		return defaultBulkMax // no answer: ask again next time
	}
	var n int64
	if err == nil {
		v, ok := cfg["proto-max-bulk-len"]
		if n, err = strconv.ParseInt(v, 10, 64); !ok || err != nil || n <= 0 {
			err = fmt.Errorf("CONFIG GET answered proto-max-bulk-len %q", v)
		}
	}
	if err != nil {
		e.cfg.logger.Warn("redisstreams: cannot read proto-max-bulk-len (CONFIG GET); assuming the default, 512 MiB",
			"backend", pkg, "error", err)
		n = defaultBulkMax
	}
	e.bulkMax.Store(n)
	return n
}

// send sends args, one XADD or a pipeline, and returns the first error.
func (e *engine) send(ctx context.Context, args []redis.XAddArgs) error {
	if e.cfg.replicaAcks > 0 {
		return firstErr(e.sendReplicated(ctx, args))
	}
	if len(args) == 1 {
		err := e.client.XAdd(ctx, &args[0]).Err()
		e.failedOn(err)
		return err
	}
	_, err := e.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range args {
			p.XAdd(ctx, &args[i])
		}
		return nil
	})
	e.failedOn(err)
	return err
}

// ensureGroup creates the group on topic's stream, and the stream, unless the
// group exists. A group this value never had starts at [WithStartID]; one it
// had (created or found) and lost since, in a restart without persistence or
// by XGROUP DESTROY, starts at "0": everything published while it was missing
// is delivered, and with the stream still there so is what it held (at least
// once allows that; starting at "$" or at the start id would skip entries
// that Publish had confirmed).
func (e *engine) ensureGroup(ctx context.Context, stream string) error {
	e.mu.Lock()
	start := e.cfg.startID
	if e.groups[stream] {
		start = StartOldest
	}
	e.mu.Unlock()
	err := e.bounded(ctx).XGroupCreateMkStream(ctx, stream, e.cfg.group, start).Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("create group %q on stream %q: %w", e.cfg.group, stream, err)
	}
	e.mu.Lock()
	e.groups[stream] = true
	e.mu.Unlock()
	return nil
}

// subscribe makes sure the group exists, then starts a subscription that
// calls process for each delivery. stop stops it and waits for it; it is
// idempotent.
func (e *engine) subscribe(topic string, process wm.Process) (stop func(), err error) {
	leave, err := e.subs.Enter()
	if err != nil {
		return nil, err
	}
	defer leave() // Shutdown stops s only once it started
	if err := e.cfg.policy.CheckTopic(topic); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(e.ctx, setupTimeout)
	defer cancel()
	if err := e.ensureGroup(ctx, streamKey(topic)); err != nil {
		if e.ctx.Err() != nil {
			return nil, relay.ErrClosed
		}
		return nil, err
	}
	e.tel.WatchLag(topic, e.cfg.group)
	e.mu.Lock()
	e.names[topic]++
	consumer := e.consumerBase
	if n := e.names[topic]; n > 1 {
		consumer = fmt.Sprintf("%s-%d", consumer, n)
	}
	e.mu.Unlock()
	s := newSubscription(e, topic, consumer, process)
	if err := e.subs.Add(s); err != nil {
		return nil, err
	}
	s.start()
	e.movers().serve(topic, time.Time{})
	e.warnPool()
	return s.Stop, nil
}

// shutdown stops every subscription at once and waits for them, then the
// writer, or, once ctx is done, makes them stop waiting for their running
// handlers and returns ctx.Err(). Every call returns once the engine is
// stopped or its ctx is done; the first starts the stop.
func (e *engine) shutdown(ctx context.Context) error {
	begin := func() {
		e.cancel()
		e.tel.Close()
	}
	return e.subs.Shutdown(ctx, begin, func() {
		e.mu.Lock()
		w := e.w
		e.mu.Unlock()
		if w != nil {
			close(w.stop)
			<-w.exited
		}
		e.stopMover()
	})
}

// warnPool logs a warning when the subscriptions whose blocking reads use the
// caller's pool (clients other than *redis.Client) reach its size: reads
// then hold every connection and starve Publish, Subscribe, acks and claims.
func (e *engine) warnPool() {
	var size int
	switch c := e.client.(type) {
	case *redis.Client, *redis.ClusterClient:
		return // reads run on connections of their own
	case *redis.Ring:
		size = c.Options().PoolSize
	default:
		return
	}
	if n := e.subs.Len(); size > 0 && n >= size {
		e.cfg.logger.Warn("redisstreams: subscriptions reach the client's pool size; each holds a pooled connection in its blocking read, which starves other commands: raise PoolSize",
			"backend", pkg, "subscriptions", n, "pool_size", size)
	}
}

// idleConsumerTimeout is how long a consumer without pending entries must be
// idle before the clean-up removes it from the group.
func (e *engine) idleConsumerTimeout() time.Duration {
	return idleConsumerFactor * max(e.cfg.claimTimeout, e.cfg.blockTimeout)
}
