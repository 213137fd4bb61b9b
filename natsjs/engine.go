package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
			err = e.checkSize(nm, limit, reserve(limit))
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

// checkSize refuses a message that the server would refuse, or whose dead
// letter would not fit: payload and headers above limit (the connection's
// max_payload) less reserve. Before the first connection the limit is
// unknown (0) and the server decides.
func (e *engine) checkSize(nm *nats.Msg, limit, reserve int64) error {
	if limit <= 0 {
		return nil
	}
	hdr := headerSize(nm.Header)
	if int64(len(nm.Data)+hdr) > limit-reserve {
		if reserve > 0 {
			return fmt.Errorf("%w: payload of %d bytes with %d bytes of headers exceeds the server's max_payload of %d bytes less %d bytes kept for dead-letter metadata",
				relay.ErrPayloadTooLarge, len(nm.Data), hdr, limit, reserve)
		}
		return fmt.Errorf("%w: payload of %d bytes with %d bytes of headers exceeds the server's max_payload of %d bytes",
			relay.ErrPayloadTooLarge, len(nm.Data), hdr, limit)
	}
	return nil
}

// reserve is the room a published message leaves for the metadata of its
// dead letter: [DeadLetterReserve], or half of limit on a server whose
// max_payload is below 1536 bytes.
func reserve(limit int64) int64 {
	return min(DeadLetterReserve, limit/2)
}

// process is what a subscription calls for each delivery: it runs the
// delivery and passes the outcome to settle exactly once, even when the
// handler ends the goroutine (runtime.Goexit), after which the worker is
// replaced.
type process func(ctx context.Context, d *delivery.Delivery, settle func(error))

// running is a started subscription, as its owner stops it.
type running struct {
	s *subscription
	// begin starts stopping: fetching ends, unhandled messages are returned
	// to JetStream, and handlers are waited for in the background. It does
	// not block and may be called more than once.
	begin func()
	// done is closed once every handler returned, every held message was
	// settled and the acknowledgements were flushed.
	done <-chan struct{}
}

// stop stops r and waits until it is done or ctx is; then it abandons the
// messages still held (their leases are no longer extended, so JetStream
// redelivers them after the ack wait) and returns ctx's error.
func (r *running) stop(ctx context.Context) error {
	r.begin()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		r.s.abandon()
		return ctx.Err()
	}
}

// subscribe starts consuming topic: it sets up the stream and the consumer,
// then fetches in the background and calls process for each delivery, up to
// the configured concurrency.
func (e *engine) subscribe(ctx context.Context, topic string, proc process) (*running, error) {
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
		process:   proc,
		capacity:  capacity,
		threshold: max(1, min(capacity/2, e.cfg.prefetch)),
		queue:     make(chan *nats.Msg, capacity),
		freed:     make(chan struct{}, 1),
		held:      make(map[*nats.Msg]struct{}, capacity),
		leaseDone: make(chan struct{}),
	}
	var fetching, lease sync.WaitGroup
	fetching.Go(func() {
		defer close(s.queue)
		s.fetchLoop(runCtx)
	})
	for range e.cfg.concurrency {
		s.workers.Go(func() { s.work(runCtx) })
	}
	lease.Go(s.leaseLoop)
	done := make(chan struct{})
	var once sync.Once
	begin := func() {
		once.Do(func() {
			cancel()
			go func() {
				defer close(done)
				fetching.Wait()
				// Workers busy in handlers do not leave queued messages
				// waiting: what is queued goes back to JetStream now.
				for msg := range s.queue {
					s.settle(msg, s.delivery(msg), delivery.ErrStopped)
				}
				s.workers.Wait()
				s.abandon() // every held message is settled: leases end
				lease.Wait()
				if err := e.js.Conn().FlushTimeout(flushTimeout); err != nil {
					s.log.Warn("natsjs: flush acknowledgements on stop", slog.Any("error", err))
				}
			}()
		})
	}
	return &running{s: s, begin: begin, done: done}, nil
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
	process   process
	capacity  int // most messages held at once
	threshold int // fewest free places worth a pull request
	queue     chan *nats.Msg
	freed     chan struct{} // signaled when a held message is released
	workers   sync.WaitGroup

	leaseDone chan struct{} // closed by abandon: leases are no longer extended
	abandoned sync.Once

	mu   sync.Mutex
	held map[*nats.Msg]struct{} // received and not yet settled
}

// abandon stops extending the leases of the held messages.
func (s *subscription) abandon() {
	s.abandoned.Do(func() { close(s.leaseDone) })
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

// pullRequest is the body of a JetStream pull request.
type pullRequest struct {
	Batch   int           `json:"batch"`
	Expires time.Duration `json:"expires,omitempty"`
}

// fetch runs one pull request for at most n messages and queues what it
// brings as it arrives. An expired pull request (no message, or no server to
// answer) is not an error.
//
// It does not use the jetstream package's Fetch, which, when its context is
// canceled, drops the messages the server already sent for the request: they
// would stay leased until the ack wait. Instead, once ctx is done, fetch
// drains the request's subscription: the server stops sending, and every
// message it sent before is received, queued, and (the subscription
// stopping) returned to JetStream at once.
func (s *subscription) fetch(ctx context.Context, n int) error {
	info := s.cons.CachedInfo()
	// Limits set by WithConsumerConfig: a request beyond them is refused
	// (409) every time.
	if most := info.Config.MaxRequestBatch; most > 0 {
		n = min(n, most)
	}
	expires := fetchWait
	if most := info.Config.MaxRequestExpires; most > 0 {
		expires = min(expires, most)
	}
	nc := s.e.js.Conn()
	sub, err := nc.SubscribeSync(nc.NewInbox())
	if err != nil {
		return err
	}
	body, err := json.Marshal(pullRequest{Batch: n, Expires: expires})
	if err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	if err := nc.PublishRequest(s.e.nextSubject(info.Stream, info.Name), sub.Subject, body); err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	// The server ends the request after expires; a request that got no end
	// by then went to a server that is gone.
	wctx, cancel := context.WithTimeout(ctx, expires+time.Second)
	defer cancel()
	for got := 0; got < n; {
		msg, err := sub.NextMsgWithContext(wctx)
		if err != nil {
			if ctx.Err() != nil {
				s.drain(sub)
				return nil
			}
			_ = sub.Unsubscribe()
			if errors.Is(err, context.DeadlineExceeded) {
				return nil
			}
			return err
		}
		end, err := pullStatus(msg)
		if err != nil || end {
			_ = sub.Unsubscribe()
			return err
		}
		if isStatus(msg) {
			continue
		}
		s.hold(msg)
		s.queue <- msg // never blocks: at most capacity are held
		got++
	}
	_ = sub.Unsubscribe()
	return nil
}

// drain ends the pull request of sub when the subscription stops: the
// server stops sending (no interest), and the messages it sent before are
// received and queued, to be returned to JetStream.
func (s *subscription) drain(sub *nats.Subscription) {
	if err := sub.Drain(); err != nil {
		_ = sub.Unsubscribe()
		return
	}
	deadline := time.Now().Add(flushTimeout)
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			_ = sub.Unsubscribe()
			return
		}
		msg, err := sub.NextMsg(wait)
		if err != nil {
			return // drained (the subscription is gone), or given up
		}
		if isStatus(msg) {
			continue
		}
		s.hold(msg)
		s.queue <- msg
	}
}

// isStatus reports whether msg is a status message of the pull request
// rather than a stored message.
func isStatus(msg *nats.Msg) bool {
	return len(msg.Data) == 0 && msg.Header.Get("Status") != ""
}

// pullStatus reads a status message: end is true when the pull request is
// over (no messages, expired); err when it failed.
func pullStatus(msg *nats.Msg) (end bool, err error) {
	if !isStatus(msg) {
		return false, nil
	}
	switch code := msg.Header.Get("Status"); code {
	case "100": // heartbeat or flow control
		return false, nil
	case "404", "408":
		return true, nil
	case "503":
		return true, nats.ErrNoResponders
	default:
		return true, fmt.Errorf("pull request: status %s %s", code, msg.Header.Get("Description"))
	}
}

// nextSubject is the subject of pull requests of consumer on stream, under
// the API prefix or domain of the caller's JetStream.
func (e *engine) nextSubject(stream, consumer string) string {
	o := e.js.Options()
	prefix := "$JS.API."
	switch {
	case o.Domain != "":
		prefix = "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		prefix = o.APIPrefix
		if !strings.HasSuffix(prefix, ".") {
			prefix += "."
		}
	}
	return prefix + "CONSUMER.MSG.NEXT." + stream + "." + consumer
}

// work handles queued messages one at a time until the queue is closed and
// drained. Once ctx is done, what is left is settled unhandled. A handler
// that calls runtime.Goexit ends the worker (its delivery settled): a new
// worker takes its place.
func (s *subscription) work(ctx context.Context) {
	exited := true
	defer func() {
		if exited {
			s.workers.Go(func() { s.work(ctx) })
		}
	}()
	for msg := range s.queue {
		s.handle(ctx, msg)
	}
	exited = false
}

func (s *subscription) handle(ctx context.Context, msg *nats.Msg) {
	d := s.delivery(msg)
	if ctx.Err() != nil {
		s.settle(msg, d, delivery.ErrStopped)
		return
	}
	if err := s.e.cfg.policy.Skip(d); err != nil {
		s.settle(msg, d, err)
		return
	}
	s.process(ctx, d, func(err error) { s.settle(msg, d, err) })
}

func (s *subscription) delivery(msg *nats.Msg) *delivery.Delivery {
	d := &delivery.Delivery{Topic: s.topic, Attempt: 1}
	if md, err := msg.Metadata(); err != nil {
		s.log.Error("natsjs: read delivery metadata", slog.Any("error", err))
	} else {
		d.ID = strconv.FormatUint(md.Sequence.Stream, 10)
		d.Attempt = int(md.NumDelivered)
	}
	d.Message, d.DecodeErr = decode(msg.Header, msg.Data)
	return d
}

// settle ends the lease of msg and applies the delivery policy. It runs to
// completion even while the subscription stops; a dead-letter publish is
// bounded by the request timeout.
func (s *subscription) settle(msg *nats.Msg, d *delivery.Delivery, err error) {
	s.release(msg)
	if err != nil && !errors.Is(err, delivery.ErrStopped) && d.DecodeErr == nil {
		s.log.Debug("natsjs: handler failed", slog.String("id", d.ID), slog.Int("attempt", d.Attempt), slog.Any("error", err))
	}
	if serr := s.e.cfg.policy.Settle(context.Background(), d, err, settler{s: s, msg: msg, d: d}); serr != nil {
		s.log.Error("natsjs: settle delivery; it stays pending", slog.String("id", d.ID), slog.Int("attempt", d.Attempt), slog.Any("error", serr))
	}
}

func (s *subscription) hold(msg *nats.Msg) {
	s.mu.Lock()
	s.held[msg] = struct{}{}
	s.mu.Unlock()
}

func (s *subscription) release(msg *nats.Msg) {
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
// one waiting in the queue is given to another consumer. It runs until
// abandon, which a stop calls once every held message was settled (so leases
// last through a Close), or when a Shutdown's context ends first.
func (s *subscription) leaseLoop() {
	t := time.NewTicker(max(s.e.cfg.ackWait/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.leaseDone:
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
		if err := s.reply(msg, ackProgress); err != nil {
			s.log.Warn("natsjs: extend lease", slog.Any("error", err))
		}
	}
}

// Acknowledgement bodies of JetStream.
var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
)

// reply sends an acknowledgement of msg.
func (s *subscription) reply(msg *nats.Msg, body []byte) error {
	if msg.Reply == "" {
		return nats.ErrMsgNoReply
	}
	return s.e.js.Conn().Publish(msg.Reply, body)
}

// settler is the delivery.Settler of one JetStream message.
type settler struct {
	s   *subscription
	msg *nats.Msg
	d   *delivery.Delivery
}

// Ack implements delivery.Settler.
func (x settler) Ack(context.Context) error { return x.s.reply(x.msg, ackAck) }

// Retry implements delivery.Settler.
func (x settler) Retry(_ context.Context, delay time.Duration) error {
	if delay <= 0 {
		return x.s.reply(x.msg, ackNak)
	}
	return x.s.reply(x.msg, fmt.Appendf(nil, "-NAK {\"delay\": %d}", delay.Nanoseconds()))
}

// PublishDeadLetter publishes the dead letter with a Nats-Msg-Id of its own,
// per group and source message, so that a repeated dead-lettering of one
// delivery is dropped by the stream, while each group's dead letter is kept.
//
// The dead letter must be publishable whatever the source message: metadata
// keys that cannot be sent as headers (a message stored by another client)
// are left out, and said so in the reason; the reason is cut so that the
// dead letter fits in the server's max_payload (Publish keeps
// [DeadLetterReserve] bytes free for this).
func (x settler) PublishDeadLetter(ctx context.Context, topic string, m delivery.Message) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	e := x.s.e
	m.Metadata = maps.Clone(m.Metadata)
	var dropped []string
	for k, v := range m.Metadata {
		if metadataKeyError(k) != nil {
			dropped = append(dropped, k)
			delete(m.Metadata, k)
			continue
		}
		m.Metadata[k] = headerSafe(v) // the reason is an error text: it may span lines
	}
	m.UUID = headerSafe(m.UUID)
	if len(dropped) > 0 {
		slices.Sort(dropped)
		m.Metadata[relay.MetadataReason] += fmt.Sprintf(" (metadata keys %q left out of the dead letter: not valid NATS header names)", dropped)
	}
	nm, err := encode(topic, m)
	if err != nil {
		return err
	}
	// Stream and consumer names are at most 64 bytes: the id stays short.
	nm.Header.Set(nats.MsgIdHdr, "relay-dead-letter:"+ConsumerName(e.cfg.group)+":"+StreamName(x.s.topic)+":"+x.d.ID)
	limit := e.js.Conn().MaxPayload()
	if over := int64(len(nm.Data)+headerSize(nm.Header)) - limit; limit > 0 && over > 0 {
		reason := textproto.TrimString(nm.Header.Get(relay.MetadataReason)) // as sent
		if int64(len(reason)) >= over {
			nm.Header.Set(relay.MetadataReason, truncate(reason, len(reason)-int(over)))
		}
	}
	if err := e.checkSize(nm, limit, 0); err != nil {
		return err
	}
	ctx, cancel := e.bound(ctx)
	defer cancel()
	if err := e.retry(ctx, topic, func(ctx context.Context) error { return e.publishOne(ctx, topic, nm) }); err != nil {
		return err
	}
	x.s.log.Warn("natsjs: message dead-lettered",
		slog.String("id", x.d.ID),
		slog.Int("attempts", x.d.Attempt),
		slog.String("reason", nm.Header.Get(relay.MetadataReason)),
		slog.String("dead_letter_topic", topic))
	return nil
}

// truncate cuts s to at most n bytes, on a UTF-8 boundary, marking the cut
// with "..." when there is room for it.
func truncate(s string, n int) string {
	const mark = "..."
	if len(s) <= n {
		return s
	}
	if n <= len(mark) {
		return ""
	}
	keep := n - len(mark)
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + mark
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
