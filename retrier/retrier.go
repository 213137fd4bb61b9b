package retrier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/lifecycle"
	"github.com/go-relay/relay/internal/option"
	"github.com/go-relay/relay/internal/telemetry"
)

// NativeRetrier is an optional interface that a [relay.Broker] implements to
// say whether it retries failed deliveries and writes dead letters itself, as
// the delivery contract requires (attempts up to a max deliver, backoff between
// them, dead letter before acknowledgement, [relay.ErrPermanent] honoured).
//
// When HandlesRetries returns true, [New] adds nothing to delivery. When a
// broker does not implement NativeRetrier, it is treated as if HandlesRetries
// returned false: New adds its retry loop. New asks once; the answer must not
// change over the broker's life.
//
// The broker returned by New implements NativeRetrier and reports true, so
// wrapping it again adds nothing.
type NativeRetrier interface {
	// HandlesRetries reports whether the broker retries and dead-letters
	// failed deliveries on its own. It must be safe for concurrent use.
	HandlesRetries() bool
}

// New returns a broker that delivers the messages of b with the retries and
// dead letters of the delivery contract, configured by opts.
//
// When b implements [NativeRetrier] and HandlesRetries reports true, New
// returns b itself, and it must then be given no options: b applies the
// retries and dead letters it was built with, so an option given here would
// be silently ignored. New returns an error wrapping [relay.ErrInvalidOption]
// instead, saying to configure b itself (natsjs.WithMaxDeliver,
// redisstreams.WithBackoff, ...); b is left open. A program that does not know
// which broker it holds asks first:
//
//	if nr, ok := b.(retrier.NativeRetrier); !ok || !nr.HandlesRetries() {
//		b, err = retrier.New(b, retrier.WithMaxDeliver(5))
//	}
//
// Otherwise New returns a broker whose Subscribe wraps the handler in
// the retry loop described in the package doc, whose Publish is b's, and whose
// Close stops the retry loops and then closes b. Its errors from Publish,
// Subscribe and Close are b's, returned as they are, except its own: after
// Close, Publish and Subscribe return an error wrapping [relay.ErrClosed]
// ("retrier: publish \"orders\": relay: closed"), and Subscribe checks the
// topic ([relay.ErrInvalidTopic]) and the handler ([relay.ErrNilHandler])
// before b sees them. In both cases the returned broker implements
// [NativeRetrier] and reports true, and it is safe for concurrent use.
//
// New takes ownership of b: closing the returned broker closes b, and b must
// not be closed or subscribed to directly. New returns an error wrapping
// [relay.ErrInvalidOption] when b is nil, an option is invalid or nil, or
// options are given for a b that handles retries natively; b is then left
// open.
func New(b relay.Broker, opts ...Option) (relay.Broker, error) {
	if b == nil {
		return nil, invalid("nil broker")
	}
	cfg := defaultConfig()
	if err := option.Apply(pkg, &cfg, opts); err != nil {
		return nil, err
	}
	if err := cfg.policy.Validate(pkg); err != nil {
		return nil, err
	}
	if nr, ok := b.(NativeRetrier); ok && nr.HandlesRetries() {
		if len(opts) > 0 {
			return nil, invalid("%d option(s) given for a %T, which handles retries itself (HandlesRetries() is true) and would ignore them: configure the broker itself, and call New without options",
				len(opts), b)
		}
		return b, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &broker{
		inner:     b,
		policy:    cfg.policy,
		logger:    cfg.logger,
		onError:   cfg.onError,
		tel:       telemetry.New("relay", cfg.tel, nil),
		ctx:       ctx,
		cancel:    cancel,
		loopsDone: make(chan struct{}),
	}
	if dp, ok := b.(relay.DelayedPublisher); ok {
		return &delayedBroker{broker: r, inner: dp}, nil
	}
	return r, nil
}

// delayedBroker is the broker New returns for a b that implements
// [relay.DelayedPublisher]: it delays messages as b does.
type delayedBroker struct {
	*broker
	inner relay.DelayedPublisher
}

var _ relay.DelayedPublisher = (*delayedBroker)(nil)

// PublishAt publishes through the wrapped broker's PublishAt, with its
// guarantees and errors; the retries of a delayed message's deliveries are
// the retrier's, as for any message. A nil ctx returns an error wrapping
// [relay.ErrNilContext], and after Close it returns an error wrapping
// [relay.ErrClosed], before the wrapped broker sees either.
func (r *delayedBroker) PublishAt(ctx context.Context, topic string, payload []byte, at time.Time) error {
	if ctx == nil {
		return fmt.Errorf("retrier: publish %q: %w", topic, relay.ErrNilContext)
	}
	if r.isClosed() {
		return fmt.Errorf("retrier: publish %q: %w", topic, relay.ErrClosed)
	}
	return r.inner.PublishAt(ctx, topic, payload, at)
}

// broker runs every delivery of inner through the retry loop.
type broker struct {
	inner   relay.Broker
	policy  delivery.Policy
	logger  *slog.Logger
	onError func(error)
	tel     *telemetry.Telemetry

	// ctx is canceled by Close: it interrupts backoff waits and dead-letter
	// publishes.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	// loops counts the wrapped handler calls in progress. Add happens under mu
	// while !closed, so that the Wait after closing never races an Add.
	loops sync.WaitGroup
	// loopsDone is closed once Close or Shutdown has begun and every loop
	// has returned.
	loopsDone chan struct{}

	closeOnce sync.Once
	// innerMu guards innerClosed: set once the wrapped broker closed without
	// error. Until then each Close or Shutdown tries again, as the contract's
	// Shutdown allows.
	innerMu     sync.Mutex
	innerClosed bool
}

var (
	_ relay.Broker     = (*broker)(nil)
	_ relay.Shutdowner = (*broker)(nil)
	_ NativeRetrier    = (*broker)(nil)
)

// HandlesRetries reports true: the retrier handles the retries of the broker it
// wraps.
func (r *broker) HandlesRetries() bool { return true }

// Publish publishes through the wrapped broker. A nil ctx returns an error
// wrapping [relay.ErrNilContext] before the wrapped broker sees it.
func (r *broker) Publish(ctx context.Context, topic string, payload []byte) error {
	if ctx == nil {
		return fmt.Errorf("retrier: publish %q: %w", topic, relay.ErrNilContext)
	}
	if r.isClosed() {
		return fmt.Errorf("retrier: publish %q: %w", topic, relay.ErrClosed)
	}
	return r.inner.Publish(ctx, topic, payload)
}

// Subscribe subscribes to the wrapped broker with handler wrapped in the retry
// loop.
func (r *broker) Subscribe(topic string, handler relay.Handler) error {
	if r.isClosed() {
		return fmt.Errorf("retrier: subscribe %q: %w", topic, relay.ErrClosed)
	}
	if err := relay.ValidateTopic(topic); err != nil {
		return fmt.Errorf("retrier: subscribe %q: %w", topic, err)
	}
	if handler == nil {
		return fmt.Errorf("retrier: subscribe %q: %w", topic, relay.ErrNilHandler)
	}
	// A message must always have somewhere to go: refuse a topic whose
	// dead-letter topic is invalid rather than retry its failures forever.
	if err := r.policy.CheckTopic(topic); err != nil {
		return fmt.Errorf("retrier: subscribe %q: %w", topic, err)
	}
	tel := r.tel.Subscription(topic, "")
	return r.inner.Subscribe(topic, func(payload []byte) error {
		if !r.enter() {
			return fmt.Errorf("retrier: %q: message not handled: %w", topic, relay.ErrClosed)
		}
		defer r.loops.Done()
		return r.deliver(topic, tel, handler, payload)
	})
}

// Close stops the retry loops, waits for them and closes the wrapped broker,
// returning its error. A message whose loop Close interrupts in a backoff
// wait is handed back to the wrapped broker (its handler returns an error
// wrapping [relay.ErrClosed]), which keeps it for the next consumer as it
// keeps any failed delivery.
func (r *broker) Close() error { return r.Shutdown(context.Background()) }

// Shutdown is Close bounded by ctx ([relay.Shutdowner]): it stops the retry
// loops at once (a backoff wait ends; a handler call in progress runs on) and,
// when ctx is done before the loops have returned, returns an error wrapping
// ctx.Err() without closing the wrapped broker, whose handlers are still
// running; a later Close or Shutdown waits again and then closes it. Once the
// loops have returned it closes the wrapped broker with its Shutdown(ctx) when
// it implements [relay.Shutdowner], with Close otherwise, and returns its
// error. Publish and Subscribe return an error wrapping [relay.ErrClosed] from
// the first call on. A nil ctx returns an error wrapping [relay.ErrNilContext]
// and closes nothing.
func (r *broker) Shutdown(ctx context.Context) error {
	if ctx == nil {
		return fmt.Errorf("retrier: shutdown: %w", relay.ErrNilContext)
	}
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		r.cancel()
		go func() {
			r.loops.Wait()
			close(r.loopsDone)
		}()
	})
	select {
	case <-r.loopsDone:
	case <-ctx.Done():
		return fmt.Errorf("retrier: shutdown: handlers still running: %w", ctx.Err())
	}
	r.innerMu.Lock()
	defer r.innerMu.Unlock()
	if r.innerClosed {
		return nil
	}
	var err error
	if sd, ok := r.inner.(relay.Shutdowner); ok {
		err = sd.Shutdown(ctx)
	} else {
		err = r.inner.Close()
	}
	if err != nil {
		return fmt.Errorf("retrier: close: %w", err)
	}
	r.innerClosed = true
	return nil
}

func (r *broker) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// enter registers a retry loop; it returns false once Close has begun.
func (r *broker) enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.loops.Add(1)
	return true
}

// deliver runs the attempts of one delivery. It returns nil once the message
// was handled or dead-lettered, and an error, for the wrapped broker to keep
// the message, when Close interrupted it first or the dead letter cannot be
// published.
func (r *broker) deliver(topic string, tel *telemetry.Topic, h relay.Handler, payload []byte) error {
	for attempt := 1; ; attempt++ {
		a := tel.Start(context.Background(), "", attempt, nil)
		// Each attempt gets its own copy: the handler owns its payload and may
		// change it, and the dead letter must be the original byte for byte.
		err := delivery.Call(h, append([]byte(nil), payload...))
		action, wait := r.policy.Decide(attempt, err)
		switch action {
		case delivery.Ack:
			a.Settled(telemetry.Acked, nil, 0, "")
			return nil
		case delivery.DeadLetter:
			// The dead letter continues the attempt's trace: the retrier
			// cannot see the source message's.
			derr := r.deadLetter(a.Context(r.ctx), topic, payload, attempt, err)
			if derr != nil {
				a.Settled(telemetry.HandedBack, err, 0, "")
			} else {
				a.Settled(telemetry.DeadLettered, err, 0, r.policy.DeadLetterTopic(topic))
			}
			return derr
		}
		a.Settled(telemetry.Retried, err, wait, "")
		r.logAttempt(topic, attempt, wait, err)
		if !r.wait(wait) {
			return fmt.Errorf("retrier: %q: closed while waiting after attempt %d (last error: %v): %w",
				topic, attempt, err, relay.ErrClosed)
		}
	}
}

// deadLetter publishes payload to the dead-letter topic of topic, retrying a
// failed publish with backoff until it succeeds, fails for good, or Close;
// ctx is r.ctx, with the trace context of the last attempt.
func (r *broker) deadLetter(ctx context.Context, topic string, payload []byte, attempts int, cause error) error {
	dlTopic := r.policy.DeadLetterTopic(topic)
	r.logger.Warn("retrier: dead-lettering message", "topic", topic, "dead_letter_topic", dlTopic,
		"attempts", attempts, "error", cause)
	for try := 1; ; try++ {
		perr := r.inner.Publish(ctx, dlTopic, payload)
		if perr == nil {
			return nil
		}
		err := fmt.Errorf("retrier: publish dead letter of %q to %q (try %d, after %d attempts, last error: %v): %w",
			topic, dlTopic, try, attempts, cause, perr)
		if r.ctx.Err() != nil {
			// Close canceled the publish: not a backend failure to report.
			return fmt.Errorf("%w; closed before the dead letter was published: %w", err, relay.ErrClosed)
		}
		r.report(err)
		if !retryable(perr) {
			return err
		}
		if !r.wait(r.policy.Backoff(try)) {
			return fmt.Errorf("%w; closed before the dead letter was published: %w", err, relay.ErrClosed)
		}
	}
}

// retryable reports whether a failed publish may succeed if tried again.
func retryable(err error) bool {
	return !errors.Is(err, relay.ErrInvalidTopic) &&
		!errors.Is(err, relay.ErrPayloadTooLarge) &&
		!errors.Is(err, relay.ErrClosed)
}

// wait waits for d and reports true, or reports false as soon as Close begins.
func (r *broker) wait(d time.Duration) bool { return lifecycle.Sleep(r.ctx, d) }

// logAttempt logs a failed attempt that will be retried: at level Debug, since
// the contract expects failures, except a panic, a bug worth seeing, at Warn
// with its stack.
func (r *broker) logAttempt(topic string, attempt int, wait time.Duration, err error) {
	attrs := []any{"topic", topic, "attempt", attempt, "max_deliver", r.policy.MaxDeliver, "backoff", wait, "error", err}
	if pe, ok := errors.AsType[*delivery.PanicError](err); ok {
		r.logger.Warn("retrier: handler panicked", append(attrs, "stack", string(pe.Stack))...)
		return
	}
	r.logger.Debug("retrier: attempt failed", attrs...)
}

func (r *broker) report(err error) {
	r.logger.Error("retrier: dead letter not published; message kept", "error", err)
	if r.onError != nil {
		r.onError(err)
	}
}
