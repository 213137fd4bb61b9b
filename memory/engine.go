package memory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/lifecycle"
	"github.com/go-relay/relay/internal/telemetry"
	"github.com/go-relay/relay/internal/wm"
)

// engine is what the Broker and the Subscriber share: it runs subscriptions on
// a hub and settles their deliveries by the policy.
type engine struct {
	hub *Hub
	cfg config
	tel *telemetry.Telemetry

	closing chan struct{} // closed when shutdown begins: unblocks publishes waiting for space
	subs    *lifecycle.Registry[*subscription]
}

func newEngine(cfg config) *engine {
	return &engine{
		hub:     cfg.hub,
		cfg:     cfg,
		tel:     telemetry.New(pkg, cfg.tel, telemetry.InspectorLag(&Inspector{hub: cfg.hub, deadLetter: cfg.policy.DeadLetterTopic})),
		closing: make(chan struct{}),
		subs:    lifecycle.NewRegistry[*subscription](),
	}
}

// isClosed reports whether close was called. It takes no lock: Publish asks
// it for every message.
func (e *engine) isClosed() bool {
	select {
	case <-e.closing:
		return true
	default:
		return false
	}
}

// subscribe joins the engine's group on topic name and starts delivering its
// messages to process. It returns relay.ErrClosed after close.
func (e *engine) subscribe(name string, process wm.Process) (*subscription, error) {
	leave, err := e.subs.Enter()
	if err != nil {
		return nil, err
	}
	defer leave() // shutdown stops s only once its workers started
	if e.cfg.native {
		// A message must never be left with nowhere to go.
		if err := e.cfg.policy.CheckTopic(name); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscription{
		e:       e,
		t:       e.hub.topic(name),
		log:     delivery.Logger(e.cfg.logger, pkg, e.cfg.group).With(slog.String(delivery.LogTopic, name)),
		process: process,
		tel:     e.tel.Subscription(name, e.cfg.group),
		ctx:     ctx,
		cancel:  cancel,
	}
	e.tel.WatchLag(name, e.cfg.group)
	s.t.mu.Lock()
	s.g = s.t.join(e.cfg.group)
	s.t.mu.Unlock()
	if err := e.subs.Add(s); err != nil {
		return nil, err
	}
	s.workers = make([]*worker, e.cfg.concurrency)
	for i := range s.workers {
		s.workers[i] = &worker{s: s, wake: make(chan struct{}, 1)}
	}
	s.t.mu.Lock()
	s.g.subs = append(s.g.subs, s)
	s.t.mu.Unlock()
	for _, w := range s.workers {
		lifecycle.Go(&s.wg, w.run)
	}
	return s, nil
}

// join creates the engine's group on topic name, without subscribing.
func (e *engine) join(name string) {
	t := e.hub.topic(name)
	t.mu.Lock()
	t.join(e.cfg.group)
	t.mu.Unlock()
	e.tel.WatchLag(name, e.cfg.group)
}

// shutdown stops every subscription and waits for their handlers until ctx
// is done, then returns ctx.Err(). The first call starts the stop, in the
// background, so that handlers that outlive ctx finish and settle their
// deliveries after it returns; every call waits for the same stop.
func (e *engine) shutdown(ctx context.Context) error {
	return e.subs.Shutdown(ctx, func() { close(e.closing); e.tel.Close() }, nil)
}

// close is shutdown without a bound.
func (e *engine) close() { _ = e.shutdown(context.Background()) }

// subscription is one consumer of a group: as many worker goroutines as its
// concurrency, each taking the group's next message, processing it, settling
// it and taking the next. With concurrency 1 the one worker takes messages
// in order. A worker takes a message only when it is about to process it, so
// the messages out at once are bounded by the concurrency and nothing is
// buffered.
type subscription struct {
	e       *engine
	t       *topic
	g       *group // guarded by t.mu
	log     *slog.Logger
	process wm.Process
	tel     *telemetry.Topic
	ctx     context.Context // done when the subscription stops
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the workers
	workers []*worker      // fixed once started

	stopOnce sync.Once
}

// Stop stops the workers, waiting for the running deliveries to be settled.
// A delivery that a worker took and did not process, and a wake-up that a
// stopping worker did not act on, go to the group's other subscriptions
// (lifecycle.Subscription).
func (s *subscription) Stop() {
	s.stopOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.t.mu.Lock()
		if i := slices.Index(s.g.subs, s); i >= 0 {
			s.g.subs = slices.Delete(s.g.subs, i, i+1)
		}
		s.g.wakeAll() // another subscription may take what s left
		s.t.mu.Unlock()
		s.e.subs.Remove(s)
	})
}

// Abandon does nothing (lifecycle.Subscription): a handler still running
// when a Shutdown's context ends keeps its delivery in flight, and its
// worker settles it when it returns.
func (s *subscription) Abandon() {}

// worker is one of a subscription's goroutines.
//
// Wake-ups: a worker that finds nothing to take puts itself on its group's
// idle list, under t.mu, and waits for its wake channel. Whoever makes a
// message due (a publish, a redelivery, a stopping subscription) takes an
// idle worker off the list, under t.mu, and sends on its channel, which has
// room for one pending wake-up, so a wake-up sent before the worker waits is
// not lost. A worker woken for a message it then does not take (it stops)
// leaves the message in the group, and its subscription's stop wakes every
// idle worker of the group.
type worker struct {
	s    *subscription
	wake chan struct{} // one pending wake-up
	idle bool          // on the group's idle list; guarded by t.mu

	// The delivery being processed, reused from one message to the next: a
	// wm.Process must not keep it after it returns.
	d delivery.Delivery
	// The delivery taken, set and cleared under t.mu (an Inspector counts
	// it as pending), and what settling it decided, applied under t.mu
	// together with taking the next message.
	tk      taken
	outcome outcome
	delay   time.Duration // of a redelivery
	// processing is true while the process function runs: if the worker
	// ends then, the handler called runtime.Goexit.
	processing bool
}

type outcome int

const (
	none     outcome = iota
	acked            // the group is done with the message
	retried          // due again after delay, as an attempt
	released         // due again after delay, not an attempt
)

// signal wakes w. It never blocks: a wake-up already pending covers this one,
// since w rereads the group's state.
func (w *worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) run() {
	defer func() {
		if !w.processing {
			return
		}
		// The handler called runtime.Goexit, which cannot be stopped: settle
		// its delivery as a failure; lifecycle.Go runs w again.
		w.processing = false
		w.settle(w.tk, delivery.ErrGoexit)
		w.s.t.mu.Lock()
		w.apply()
		w.s.t.mu.Unlock()
	}()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		tk, wait, ok, stop := w.take()
		if stop {
			return
		}
		if ok {
			w.deliver(tk)
			continue
		}
		var due <-chan time.Time
		if wait >= 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			due = timer.C
		}
		select {
		case <-w.wake: // a message is due, or another subscription stopped
		case <-due: // a redelivery's backoff is over
		case <-w.s.ctx.Done(): // stop
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// take settles the last delivery as decided and takes the group's next
// message, in one critical section. When there is none, w goes on the idle
// list and wait is how long until a redelivery is due, or negative. stop
// says that the subscription is stopping: w takes nothing and returns.
func (w *worker) take() (tk taken, wait time.Duration, ok, stop bool) {
	s := w.s
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	w.apply()
	if w.idle {
		s.g.removeIdle(w)
	}
	if s.ctx.Err() != nil {
		return taken{}, -1, false, true
	}
	tk, wait, ok = s.g.next()
	if ok {
		w.tk = tk // under t.mu: an Inspector reads it
	}
	if !ok {
		s.g.idle = append(s.g.idle, w)
		w.idle = true
	}
	return tk, wait, ok, false
}

// apply settles the last delivery as decided. The caller holds t.mu.
func (w *worker) apply() {
	g := w.s.g
	switch w.outcome {
	case acked:
		g.ack(w.tk.e)
	case retried:
		g.retry(w.tk.e, w.tk.attempt, w.delay)
	case released:
		g.retry(w.tk.e, w.tk.attempt-1, w.delay)
	}
	w.tk, w.outcome, w.delay = taken{}, none, 0
	w.d = delivery.Delivery{} // keeps no message alive
}

// deliver processes tk and decides how to settle it.
func (w *worker) deliver(tk taken) {
	s := w.s
	w.d = delivery.Delivery{Topic: s.t.name, Attempt: tk.attempt, Message: tk.e.msg}
	w.d.Telemetry = s.tel.Start(s.ctx, tk.e.msg.UUID, tk.attempt, tk.e.msg.Metadata)
	s.tel.Hold(1)
	w.processing = true
	err := s.process(s.ctx, &w.d)
	w.processing = false
	w.settle(tk, err)
}

// settle decides how to settle tk, whose processing ended with err, and
// publishes its dead letter if it needs one; apply carries the decision out.
func (w *worker) settle(tk taken, err error) {
	s := w.s
	policy := s.e.cfg.policy
	s.tel.Hold(-1)
	if errors.Is(err, delivery.ErrStopped) {
		w.d.Telemetry.Settled(telemetry.HandedBack, err, 0, "")
		// Not processed: not an attempt. When the face stops ahead of the
		// engine, wait a backoff so that we do not hand it over and over to a
		// face that is going away.
		w.outcome = released
		if s.ctx.Err() == nil {
			w.delay = policy.MinBackoff
		}
		return
	}
	if err != nil {
		// The id is only needed for failures (logs, dead letters): an
		// acknowledged delivery does not pay for formatting it.
		w.d.ID = strconv.FormatUint(tk.e.seq, 10)
		delivery.LogHandlerFailed(s.log, pkg, &w.d, err)
	}
	if !s.e.cfg.native {
		// A plain queue: whoever wraps us (the retrier) counts attempts.
		if err == nil {
			w.outcome = acked
			w.d.Telemetry.Settled(telemetry.Acked, nil, 0, "")
		} else {
			w.outcome, w.delay = retried, policy.Backoff(tk.attempt)
			w.d.Telemetry.Settled(telemetry.Retried, err, w.delay, "")
		}
		return
	}
	if serr := policy.Settle(s.ctx, &w.d, err, w); serr != nil {
		delivery.LogSettleFailed(s.log, pkg, &w.d, serr)
	}
}

// Ack implements delivery.Settler: the worker acknowledges the delivery when
// it takes its next message (or stops), under the same lock.
func (w *worker) Ack(context.Context) error {
	w.outcome = acked
	return nil
}

// Retry implements delivery.Settler, as Ack does.
func (w *worker) Retry(_ context.Context, delay time.Duration) error {
	w.outcome, w.delay = retried, delay
	return nil
}

// PublishDeadLetter implements delivery.Settler: it stores msg on the hub,
// waiting while topic is full until ctx, the subscription's, is done: then
// the delivery stays pending. A dead letter stored is logged at Warn.
func (w *worker) PublishDeadLetter(ctx context.Context, topic string, msg delivery.Message) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return fmt.Errorf("memory: dead-letter topic: %w", err)
	}
	s := w.s
	if err := s.e.hub.publish(ctx, nil, topic, msg); err != nil {
		return err
	}
	delivery.LogDeadLettered(s.log, pkg, &w.d, msg.Metadata[relay.MetadataReason], topic)
	return nil
}
