package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

// Tuning of the engine. They are not options: they trade latency of rare
// events (idle fetch renewal, recovery after an outage) against load.
const (
	// fetchWait bounds one pull request. An idle subscription renews its pull
	// request this often; it is also the longest a fetch waits on a server
	// that went away without a word.
	fetchWait = 5 * time.Second
	// minRetry and maxRetry bound the backoff between attempts of a failed
	// fetch, stream or consumer set-up, or publish.
	minRetry = 50 * time.Millisecond
	maxRetry = 5 * time.Second
	// attemptTimeout bounds one attempt of a management request or of a
	// publish within a longer deadline.
	attemptTimeout = 5 * time.Second
	// flushTimeout bounds the flush of acks when a subscription stops.
	flushTimeout = 2 * time.Second
)

// JetStream error codes relay reacts to.
const (
	codeStreamSubjectOverlap = 10065
	codeMessageTooLarge      = jetstream.JSErrCodeStreamMessageExceedsMaximum
)

// engine is what a Broker, a Publisher and a Subscriber share: stream set-up,
// publishing, and the fetch loop that delivers to a process function and
// settles by the delivery policy.
type engine struct {
	js  jetstream.JetStream
	cfg config
	log *slog.Logger

	// streams maps a topic to the name of the stream known to hold it, so that
	// a stream is set up once per topic and process, not once per message.
	streams sync.Map
}

func newEngine(js jetstream.JetStream, opts []Option) (*engine, error) {
	if js == nil {
		return nil, fmt.Errorf("natsjs: %w: %w", relay.ErrInvalidOption, errNilJetStream)
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	log := cfg.logger.With(slog.String("broker", "natsjs"), slog.String("group", cfg.group))
	return &engine{js: js, cfg: cfg, log: log}, nil
}

// bound returns ctx, limited to the request timeout if it has no deadline.
func (e *engine) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, e.cfg.requestTimeout)
}

// ensureStream creates or updates the stream of topic, once per engine, and
// returns its name. When another stream already captures the topic's subject
// (for example one made by another Watermill adapter), relay uses that one.
func (e *engine) ensureStream(ctx context.Context, topic string) (string, error) {
	if name, ok := e.streams.Load(topic); ok {
		return name.(string), nil
	}
	sc := jetstream.StreamConfig{
		Name:      StreamName(topic),
		Subjects:  []string{topic},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
	}
	if e.cfg.streamConfig != nil {
		e.cfg.streamConfig(&sc)
		sc.Name, sc.Subjects = StreamName(topic), []string{topic}
	}
	name := sc.Name
	_, err := e.js.CreateOrUpdateStream(ctx, sc)
	if isAPIError(err, codeStreamSubjectOverlap) {
		name, err = e.js.StreamNameBySubject(ctx, topic)
	}
	if err != nil {
		return "", fmt.Errorf("create stream %q: %w", sc.Name, err)
	}
	e.streams.Store(topic, name)
	return name, nil
}

// ensureConsumer creates or updates the group's durable consumer on stream.
func (e *engine) ensureConsumer(ctx context.Context, stream, topic string) (jetstream.Consumer, error) {
	name := ConsumerName(e.cfg.group)
	cc := jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if e.cfg.consumerConfig != nil {
		e.cfg.consumerConfig(&cc)
	}
	cc.Name, cc.Durable = name, name
	cc.FilterSubject, cc.FilterSubjects = topic, nil
	cc.AckPolicy = jetstream.AckExplicitPolicy
	cc.AckWait = e.cfg.ackWait
	// Unlimited: the server must never give up on a message by itself, or a
	// message whose last attempt died with its consumer would be neither
	// acknowledged nor dead-lettered. relay counts attempts (see doc.go).
	cc.MaxDeliver = -1
	cc.BackOff = nil
	cons, err := e.js.CreateOrUpdateConsumer(ctx, stream, cc)
	if err != nil {
		return nil, fmt.Errorf("create consumer %q on stream %q: %w", name, stream, err)
	}
	return cons, nil
}

// setup makes sure topic's stream and the group's consumer exist, retrying
// transient failures within ctx.
func (e *engine) setup(ctx context.Context, topic string) (jetstream.Consumer, error) {
	var cons jetstream.Consumer
	err := e.retry(ctx, topic, func(ctx context.Context) error {
		stream, err := e.ensureStream(ctx, topic)
		if err != nil {
			return err
		}
		cons, err = e.ensureConsumer(ctx, stream, topic)
		return err
	})
	return cons, err
}

// retry runs op until it succeeds, fails with an error that is not
// transient, or ctx is done, waiting with backoff between attempts. Each
// attempt has at most attemptTimeout: a request lost with a server that went
// down is given up and sent again, rather than awaited until ctx ends.
func (e *engine) retry(ctx context.Context, topic string, op func(ctx context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := op(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		lost := errors.Is(err, context.DeadlineExceeded) // the attempt timed out, ctx did not
		if !lost && !transient(err) {
			return err
		}
		if forgetsStream(err) {
			e.streams.Delete(topic)
		}
		if !sleep(ctx, retryDelay(attempt)) {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
	}
}

// publish stores msgs on topic and returns once every one is acknowledged by
// the stream, or failed. ctxs[i] bounds msgs[i]; a context without a deadline
// is bounded by the request timeout. Messages are sent without waiting for
// each other's acknowledgement; one that fails for a transient reason, or
// whose acknowledgement does not come within attemptTimeout, is sent again
// (its Nats-Msg-Id makes that safe) until its context is done. A message too
// large for the server fails them all, before anything is sent.
//
// The common case, an acknowledgement within the attempt, costs one timer for
// the whole call and no context.
func (e *engine) publish(ctxs []context.Context, topic string, msgs []delivery.Message) error {
	if err := ctxs[0].Err(); err != nil {
		return err
	}
	start := time.Now()
	if _, ok := e.streams.Load(topic); !ok {
		ctx, cancel := e.bound(ctxs[0])
		err := e.retry(ctx, topic, func(ctx context.Context) error {
			_, err := e.ensureStream(ctx, topic)
			return err
		})
		cancel()
		if err != nil {
			return err
		}
	}
	limit := e.js.Conn().MaxPayload()
	type sent struct {
		nm     *nats.Msg
		future jetstream.PubAckFuture
		err    error
	}
	batch := make([]sent, len(msgs))
	for i, m := range msgs {
		nm, err := encode(topic, m)
		if err == nil {
			err = e.checkSize(nm, limit)
		}
		if err != nil {
			return e.nameFailure(i, msgs, err)
		}
		batch[i].nm = nm
	}
	wait := attemptTimeout
	for i := range batch {
		if _, ok := ctxs[i].Deadline(); !ok {
			wait = min(wait, e.cfg.requestTimeout)
		}
		if batch[i].err = ctxs[i].Err(); batch[i].err == nil {
			batch[i].future, batch[i].err = e.js.PublishMsgAsync(batch[i].nm)
		}
	}
	// One timer for the whole batch: its messages were sent together.
	timer := time.NewTimer(wait)
	defer timer.Stop()
	expired := false
	var errs []error
	for i, b := range batch {
		err := b.err
		if err == nil {
			expired, err = await(ctxs[i], b.future, timer.C, expired)
		}
		if err != nil && (errors.Is(err, errAttemptLost) || transient(err)) {
			ctx, cancel := ctxs[i], context.CancelFunc(func() {})
			if _, ok := ctx.Deadline(); !ok {
				ctx, cancel = context.WithDeadline(ctx, start.Add(e.cfg.requestTimeout))
			}
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
			} else {
				err = e.retry(ctx, topic, func(ctx context.Context) error { return e.publishOne(ctx, topic, b.nm) })
			}
			cancel()
		}
		if err != nil {
			errs = append(errs, e.nameFailure(i, msgs, err))
		}
	}
	return errors.Join(errs...)
}

// errAttemptLost is await's error when the attempt timed out before ctx.
var errAttemptLost = errors.New("no acknowledgement within the attempt timeout")

// publishOne sends nm and waits for its acknowledgement.
func (e *engine) publishOne(ctx context.Context, topic string, nm *nats.Msg) error {
	if _, err := e.ensureStream(ctx, topic); err != nil {
		return err
	}
	f, err := e.js.PublishMsgAsync(nm)
	if err != nil {
		return err
	}
	_, err = await(ctx, f, nil, false)
	return err
}

// await waits for the acknowledgement of f, ctx, or a tick of lost
// (errAttemptLost). expired says that lost ticked already; await returns
// whether it has by now.
func await(ctx context.Context, f jetstream.PubAckFuture, lost <-chan time.Time, expired bool) (bool, error) {
	if expired {
		// The attempt is over: take what has come, wait for nothing more.
		select {
		case <-f.Ok():
			return true, nil
		case err := <-f.Err():
			return true, ackError(err)
		default:
			if err := ctx.Err(); err != nil {
				return true, err
			}
			return true, errAttemptLost
		}
	}
	select {
	case <-f.Ok():
		return false, nil
	case err := <-f.Err():
		return false, ackError(err)
	case <-ctx.Done():
		return false, ctx.Err()
	case <-lost:
		return true, errAttemptLost
	}
}

func ackError(err error) error {
	if isAPIError(err, codeMessageTooLarge) {
		return fmt.Errorf("%w: %w", relay.ErrPayloadTooLarge, err)
	}
	return err
}

func (e *engine) nameFailure(i int, msgs []delivery.Message, err error) error {
	if len(msgs) == 1 {
		return err
	}
	return fmt.Errorf("message %d of %d (uuid %q): %w", i+1, len(msgs), msgs[i].UUID, err)
}

// checkSize refuses a message that the server would refuse: payload and
// headers above limit, the connection's max_payload. Before the first
// connection the limit is unknown (0) and the server decides.
func (e *engine) checkSize(nm *nats.Msg, limit int64) error {
	if limit <= 0 {
		return nil
	}
	hdr := headerSize(nm.Header)
	if int64(len(nm.Data)+hdr) > limit {
		return fmt.Errorf("%w: payload of %d bytes with %d bytes of headers exceeds the server's max_payload of %d bytes",
			relay.ErrPayloadTooLarge, len(nm.Data), hdr, limit)
	}
	return nil
}

// subscribe starts consuming topic: it sets up the stream and the consumer,
// then fetches in the background and calls process for each delivery, up to
// the configured concurrency. stop stops fetching, waits for process calls
// to return and their deliveries to be settled.
func (e *engine) subscribe(ctx context.Context, topic string, process func(context.Context, *delivery.Delivery) error) (stop func(), err error) {
	setupCtx, cancelSetup := e.bound(ctx)
	defer cancelSetup()
	cons, err := e.setup(setupCtx, topic)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	capacity := e.cfg.concurrency + e.cfg.prefetch
	s := &subscription{
		e:         e,
		topic:     topic,
		log:       e.log.With(slog.String("topic", topic)),
		cons:      cons,
		process:   process,
		capacity:  capacity,
		threshold: max(1, min(capacity/2, e.cfg.prefetch)),
		queue:     make(chan jetstream.Msg, capacity),
		freed:     make(chan struct{}, 1),
		held:      make(map[jetstream.Msg]struct{}, capacity),
	}
	var work, lease sync.WaitGroup
	work.Go(func() {
		defer close(s.queue)
		s.fetchLoop(runCtx)
	})
	for range e.cfg.concurrency {
		work.Go(func() { s.work(runCtx) })
	}
	leaseDone := make(chan struct{})
	lease.Go(func() { s.leaseLoop(leaseDone) })
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			work.Wait()
			// Leases last until every held message is settled.
			close(leaseDone)
			lease.Wait()
			if err := e.js.Conn().FlushTimeout(flushTimeout); err != nil {
				s.log.Debug("natsjs: flush acks on stop", slog.Any("error", err))
			}
		})
	}, nil
}

// subscription is one fetch loop, its workers and the leases of the messages
// it holds.
//
// Every message it receives is held (leased) from its arrival until it is
// settled, and the fetch loop asks for no more messages than it can hold:
// capacity (concurrency plus prefetch) less those held. So a received message
// never waits unleased in a client buffer, the queue never blocks the fetch
// loop, and at most capacity messages are held at once.
type subscription struct {
	e         *engine
	topic     string
	log       *slog.Logger
	cons      jetstream.Consumer
	process   func(context.Context, *delivery.Delivery) error
	capacity  int // most messages held at once
	threshold int // fewest free places worth a pull request
	queue     chan jetstream.Msg
	freed     chan struct{} // signaled when a held message is released

	mu   sync.Mutex
	held map[jetstream.Msg]struct{} // received and not yet settled
}

// fetchLoop pulls messages into the queue while there is room for them. It
// returns once ctx is done and the last pull request has ended.
func (s *subscription) fetchLoop(ctx context.Context) {
	failures := 0
	for {
		n, ok := s.room(ctx)
		if !ok {
			return
		}
		err := s.fetch(ctx, n)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures = 0
			continue
		}
		failures++
		delay := retryDelay(failures)
		s.log.Warn("natsjs: fetch failed; retrying", slog.Any("error", err), slog.Duration("retry_in", delay))
		if !sleep(ctx, delay) {
			return
		}
		// The consumer (or its stream) may be gone: a server that lost its
		// store, an operator's delete. Setting it up again is idempotent.
		setupCtx, cancel := s.e.bound(ctx)
		cons, err := s.e.setup(setupCtx, s.topic)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("natsjs: set up consumer again", slog.Any("error", err))
			}
			continue
		}
		s.cons = cons
	}
}

// room waits until at least threshold messages fit besides those held, and
// returns how many fit; false once ctx is done.
func (s *subscription) room(ctx context.Context) (int, bool) {
	for {
		s.mu.Lock()
		free := s.capacity - len(s.held)
		s.mu.Unlock()
		if free >= s.threshold {
			return free, true
		}
		select {
		case <-s.freed:
		case <-ctx.Done():
			return 0, false
		}
	}
}

// fetch runs one pull request for at most n messages and queues what it
// brings as it arrives. An expired pull request (no message, or no server to
// answer) is not an error.
func (s *subscription) fetch(ctx context.Context, n int) error {
	if most := s.cons.CachedInfo().Config.MaxRequestBatch; most > 0 {
		n = min(n, most) // set by WithConsumerConfig; more is refused
	}
	fctx, cancel := context.WithTimeout(ctx, fetchWait)
	defer cancel()
	batch, err := s.cons.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		return err
	}
	for msg := range batch.Messages() {
		s.hold(msg)
		s.queue <- msg // never blocks: at most capacity are held
	}
	err = batch.Error()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// work handles queued messages one at a time until the queue is closed and
// drained. Once ctx is done, what is left is settled unhandled.
func (s *subscription) work(ctx context.Context) {
	for msg := range s.queue {
		d := s.delivery(msg)
		err := delivery.ErrStopped
		if ctx.Err() == nil {
			if err = s.e.cfg.policy.Skip(d); err == nil {
				err = s.process(ctx, d)
			}
		}
		s.settle(msg, d, err)
	}
}

func (s *subscription) delivery(msg jetstream.Msg) *delivery.Delivery {
	d := &delivery.Delivery{Topic: s.topic, Attempt: 1}
	if md, err := msg.Metadata(); err != nil {
		s.log.Error("natsjs: read delivery metadata", slog.Any("error", err))
	} else {
		d.ID = strconv.FormatUint(md.Sequence.Stream, 10)
		d.Attempt = int(md.NumDelivered)
	}
	d.Message, d.DecodeErr = decode(msg.Headers(), msg.Data())
	return d
}

// settle ends the lease of msg and applies the delivery policy. It runs to
// completion even while the subscription stops; a dead-letter publish is
// bounded by the request timeout.
func (s *subscription) settle(msg jetstream.Msg, d *delivery.Delivery, err error) {
	s.release(msg)
	if serr := s.e.cfg.policy.Settle(context.Background(), d, err, settler{s: s, msg: msg, d: d}); serr != nil {
		s.log.Warn("natsjs: settle delivery", slog.String("id", d.ID), slog.Int("attempt", d.Attempt), slog.Any("error", serr))
	}
}

func (s *subscription) hold(msg jetstream.Msg) {
	s.mu.Lock()
	s.held[msg] = struct{}{}
	s.mu.Unlock()
}

func (s *subscription) release(msg jetstream.Msg) {
	s.mu.Lock()
	delete(s.held, msg)
	s.mu.Unlock()
	select {
	case s.freed <- struct{}{}:
	default:
	}
}

// leaseLoop tells JetStream, every third of the ack wait, that each held
// message is still in progress, so that neither a slow handler's message nor
// one waiting in the queue is given to another consumer. It runs until done
// is closed, which happens only after every held message was settled, so
// leases last through a Close.
func (s *subscription) leaseLoop(done <-chan struct{}) {
	t := time.NewTicker(max(s.e.cfg.ackWait/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			s.extend()
		}
	}
}

func (s *subscription) extend() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for msg := range s.held {
		// Sent under the lock: release, and so the ack, waits for it.
		if err := msg.InProgress(); err != nil {
			s.log.Debug("natsjs: extend lease", slog.Any("error", err))
		}
	}
}

// settler is the delivery.Settler of one JetStream message.
type settler struct {
	s   *subscription
	msg jetstream.Msg
	d   *delivery.Delivery
}

func (x settler) Ack(context.Context) error { return x.msg.Ack() }

func (x settler) Retry(_ context.Context, delay time.Duration) error {
	if delay <= 0 {
		return x.msg.Nak()
	}
	return x.msg.NakWithDelay(delay)
}

// PublishDeadLetter publishes the dead letter with a Nats-Msg-Id of its own,
// per group and source message, so that a repeated dead-lettering of one
// delivery is dropped by the stream, while each group's dead letter is kept.
func (x settler) PublishDeadLetter(ctx context.Context, topic string, m delivery.Message) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	e := x.s.e
	nm, err := encode(topic, m)
	if err != nil {
		return err
	}
	nm.Header.Set(nats.MsgIdHdr, "relay-dead-letter:"+ConsumerName(e.cfg.group)+":"+x.s.topic+":"+x.d.ID)
	if err := e.checkSize(nm, e.js.Conn().MaxPayload()); err != nil {
		return err
	}
	ctx, cancel := e.bound(ctx)
	defer cancel()
	return e.retry(ctx, topic, func(ctx context.Context) error { return e.publishOne(ctx, topic, nm) })
}

// transient reports whether err may go away by itself: a reconnecting
// client, a server or stream not answering yet.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, jetstream.ErrTooManyStalledMsgs),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrStreamNotFound),
		errors.Is(err, jetstream.ErrConsumerNotFound):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == http.StatusServiceUnavailable
	}
	return false
}

// forgetsStream reports whether err says the stream may be gone, so that it
// is set up again on the next attempt.
func forgetsStream(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrStreamNotFound)
}

func isAPIError(err error, code jetstream.ErrorCode) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == code
}

// retryDelay is the wait before attempt+1 of a failed operation: doubling
// from minRetry up to maxRetry, the upper half random.
func retryDelay(attempt int) time.Duration {
	d := minRetry
	for i := 1; i < attempt && d < maxRetry; i++ {
		d *= 2
	}
	d = min(d, maxRetry)
	return d/2 + rand.N(d/2+1)
}

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
