package redisstreams

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/wm"
)

const pkg = "redisstreams"

const (
	// setupTimeout bounds group creation and the consumer clean-up at stop.
	setupTimeout = 10 * time.Second
	// settleTimeout bounds one ack, dead-letter write, claim or refresh.
	settleTimeout = 5 * time.Second
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
)

// engine is what the faces share: publishing and subscriptions, with the
// retry, dead-letter, claim, ack and shutdown logic written once.
type engine struct {
	client       redis.UniversalClient
	cfg          config
	consumerBase string
	closeOnce    func() error

	mu     sync.Mutex
	closed bool
	subs   map[*subscription]struct{}
	names  map[string]int // subscriptions made per topic, for consumer names
}

func newEngine(client redis.UniversalClient, opts []Option) (*engine, error) {
	if client == nil {
		return nil, fmt.Errorf("%s: %w: nil redis client", pkg, relay.ErrInvalidOption)
	}
	cfg, err := newConfig(opts)
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
		subs: make(map[*subscription]struct{}), names: make(map[string]int)}
	e.closeOnce = sync.OnceValue(e.shutdown)
	return e, nil
}

func (e *engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// publish appends msgs to topic's stream, in one pipeline when there are
// several, and returns once Redis answered every XADD.
func (e *engine) publish(ctx context.Context, topic string, msgs ...delivery.Message) error {
	if e.isClosed() {
		return relay.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	args := make([]*redis.XAddArgs, len(msgs))
	for i, m := range msgs {
		values, err := encode(m)
		if err != nil {
			return err
		}
		args[i] = &redis.XAddArgs{Stream: streamKey(topic), Values: values, MaxLen: e.cfg.maxLen, Approx: true}
	}
	var err error
	switch len(args) {
	case 0:
		return nil
	case 1:
		err = e.client.XAdd(ctx, args[0]).Err()
	default:
		_, err = e.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, a := range args {
				p.XAdd(ctx, a)
			}
			return nil
		})
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// ensureGroup creates the group on topic's stream, and the stream, unless the
// group exists.
func (e *engine) ensureGroup(ctx context.Context, stream string) error {
	err := e.client.XGroupCreateMkStream(ctx, stream, e.cfg.group, e.cfg.startID).Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("create group %q on stream %q: %w", e.cfg.group, stream, err)
	}
	return nil
}

// subscribe makes sure the group exists, then starts a subscription that
// calls process for each delivery. stop stops it and waits for it; it is
// idempotent.
func (e *engine) subscribe(topic string, process wm.Process) (stop func(), err error) {
	if e.isClosed() {
		return nil, relay.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := e.ensureGroup(ctx, streamKey(topic)); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, relay.ErrClosed
	}
	e.names[topic]++
	consumer := e.consumerBase
	if n := e.names[topic]; n > 1 {
		consumer = fmt.Sprintf("%s-%d", consumer, n)
	}
	s := newSubscription(e, topic, consumer, process)
	e.subs[s] = struct{}{}
	s.start() // under e.mu, so that a concurrent close stops it
	return s.stop, nil
}

func (e *engine) remove(s *subscription) {
	e.mu.Lock()
	delete(e.subs, s)
	e.mu.Unlock()
}

func (e *engine) close() error { return e.closeOnce() }

// shutdown stops every subscription at once and waits for them.
func (e *engine) shutdown() error {
	e.mu.Lock()
	e.closed = true
	subs := make([]*subscription, 0, len(e.subs))
	for s := range e.subs {
		subs = append(subs, s)
	}
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(s.stop)
	}
	wg.Wait()
	return nil
}

// idleConsumerTimeout is how long a consumer without pending entries must be
// idle before the clean-up removes it from the group.
func (e *engine) idleConsumerTimeout() time.Duration {
	return idleConsumerFactor * max(e.cfg.claimTimeout, e.cfg.blockTimeout)
}

// jitter returns d with up to a quarter taken off at random.
func jitter(d time.Duration) time.Duration { return d - rand.N(d/4+1) }

// sleep waits d or until ctx is done, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
