package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/lifecycle"
	"github.com/go-relay/relay/internal/telemetry"
)

// process is what a subscription calls for each delivery: it runs the
// delivery and passes the outcome to x.settle exactly once, even when the
// handler ends the goroutine (runtime.Goexit), after which the worker is
// replaced. It gets the settler rather than a func(error): a method value
// passed through this indirect call cost an allocation per message.
type process func(ctx context.Context, d *delivery.Delivery, x *settler)

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

// Stop stops r and waits until it is done (lifecycle.Subscription).
func (r *running) Stop() {
	r.begin()
	<-r.done
}

// Abandon stops extending the leases of the messages r still holds, so that
// JetStream redelivers them after the ack wait (lifecycle.Subscription).
func (r *running) Abandon() { r.s.abandon() }

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
	e.tel.WatchLag(topic, e.cfg.group)
	runCtx, cancel := context.WithCancel(context.Background())
	capacity := e.cfg.concurrency + e.cfg.prefetch
	s := &subscription{
		e:         e,
		topic:     topic,
		log:       e.log.With(slog.String(delivery.LogTopic, topic)),
		cons:      cons,
		process:   proc,
		tel:       e.tel.Subscription(topic, e.cfg.group),
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
		lifecycle.Go(&s.workers, func() { s.work(runCtx) })
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
					s.settle(s.delivery(msg), delivery.ErrStopped)
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
	tel       *telemetry.Topic
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
		level := slog.LevelWarn
		if errors.Is(err, errNoEnd) {
			// Also what a late end under load looks like: setting up
			// again is harmless then, and no cause for a warning.
			level = slog.LevelInfo
		}
		s.log.Log(ctx, level, "natsjs: fetch failed; retrying", slog.Any("error", err), slog.Duration("retry_in", delay))
		if !lifecycle.Sleep(ctx, delay) {
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

// work handles queued messages one at a time until the queue is closed and
// drained. Once ctx is done, what is left is settled unhandled. A handler
// that calls runtime.Goexit ends the worker (its delivery settled):
// lifecycle.Go starts a new one in its place.
func (s *subscription) work(ctx context.Context) {
	for msg := range s.queue {
		s.handle(ctx, msg)
	}
}

func (s *subscription) handle(ctx context.Context, msg *nats.Msg) {
	x := s.delivery(msg)
	if ctx.Err() != nil {
		s.settle(x, delivery.ErrStopped)
		return
	}
	if err := s.e.cfg.policy.Skip(x.d); err != nil {
		s.settle(x, err)
		return
	}
	s.process(ctx, x.d, x)
}

// delivery reads msg into its delivery and settler, made together: one
// allocation per message for both.
func (s *subscription) delivery(msg *nats.Msg) *settler {
	x := &settler{s: s, msg: msg, own: delivery.Delivery{Topic: s.topic, Attempt: 1}}
	x.d = &x.own
	d := x.d
	if seq, delivered, ok := ackInfo(msg.Reply); ok {
		d.ID, d.Attempt = seq, int(delivered)
	} else if _, err := msg.Metadata(); err != nil {
		s.log.Error("natsjs: read delivery metadata", slog.Any("error", err))
	}
	d.Message, d.DecodeErr = decode(msg.Header, msg.Data)
	d.Telemetry = s.tel.Start(context.Background(), d.Message.UUID, d.Attempt, d.Message.Metadata)
	return x
}

// ackInfo reads what [nats.Msg.Metadata] reads from the reply subject of a
// JetStream message, $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>... (or,
// from newer servers, with a domain and an account hash after $JS.ACK.),
// that relay needs: the stream sequence, as the decimal the subject carries,
// and the number of deliveries. ok is false where Metadata fails. Unlike
// Metadata it allocates nothing: its result and the id's string each cost an
// allocation on every message.
func ackInfo(reply string) (seq string, delivered uint64, ok bool) {
	const prefix = "$JS.ACK."
	tokens := strings.Count(reply, ".") + 1
	if !strings.HasPrefix(reply, prefix) || tokens < 9 || tokens > 9 && tokens < 11 {
		return "", 0, false
	}
	rest := reply[len(prefix):]
	skip := 2 // stream and consumer
	if tokens > 9 {
		skip = 4 // domain, account hash, stream and consumer
	}
	for range skip {
		_, rest, _ = strings.Cut(rest, ".")
	}
	d, rest, _ := strings.Cut(rest, ".")
	seq, _, _ = strings.Cut(rest, ".")
	n, canonical := decimal(seq)
	if !canonical {
		seq = strconv.FormatUint(n, 10) // what Metadata's number would print
	}
	delivered, _ = decimal(d)
	return seq, delivered, true
}

// decimal parses s as nats.go parses the numbers of a reply subject (0 for
// anything but decimal digits) and reports whether s is the number's own
// decimal form.
func decimal(s string) (n uint64, canonical bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	// Past 19 digits the sum may have wrapped, as nats.go's does.
	return n, (s[0] != '0' || len(s) == 1) && len(s) <= 19
}

// settle ends the lease of msg and applies the delivery policy. It runs to
// completion even while the subscription stops; a dead-letter publish is
// bounded by the request timeout.
func (s *subscription) settle(x *settler, err error) {
	d := x.d
	s.release(x.msg)
	if err != nil && !errors.Is(err, delivery.ErrStopped) && d.DecodeErr == nil {
		delivery.LogHandlerFailed(s.log, pkg, d, err)
	}
	if serr := s.e.cfg.policy.Settle(context.Background(), d, err, x); serr != nil {
		delivery.LogSettleFailed(s.log, pkg, d, serr)
	}
}

func (s *subscription) hold(msg *nats.Msg) {
	s.mu.Lock()
	s.held[msg] = struct{}{}
	s.mu.Unlock()
	s.tel.Hold(1)
}

func (s *subscription) release(msg *nats.Msg) {
	s.mu.Lock()
	delete(s.held, msg)
	s.mu.Unlock()
	s.tel.Hold(-1)
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

// settler is the delivery.Settler of one JetStream message, and holds its
// delivery (own; d points to it).
type settler struct {
	s   *subscription
	msg *nats.Msg
	d   *delivery.Delivery
	own delivery.Delivery
}

// settle is the subscription's settle of x, the function process gets.
func (x *settler) settle(err error) { x.s.settle(x, err) }

// Ack implements delivery.Settler.
func (x *settler) Ack(context.Context) error { return x.s.reply(x.msg, ackAck) }

// Retry implements delivery.Settler.
func (x *settler) Retry(_ context.Context, delay time.Duration) error {
	if delay <= 0 {
		return x.s.reply(x.msg, ackNak)
	}
	return x.s.reply(x.msg, fmt.Appendf(nil, "-NAK {\"delay\": %d}", delay.Nanoseconds()))
}
