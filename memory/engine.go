package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/wm"
)

// engine is what the Broker and the Subscriber share: it runs subscriptions on
// a hub and settles their deliveries by the policy.
type engine struct {
	hub *Hub
	cfg config

	mu      sync.Mutex
	closed  bool
	closing chan struct{} // closed by close: unblocks publishes waiting for space
	subs    map[*subscription]struct{}

	closeOnce sync.Once
}

func newEngine(cfg config) *engine {
	return &engine{
		hub:     cfg.hub,
		cfg:     cfg,
		closing: make(chan struct{}),
		subs:    make(map[*subscription]struct{}),
	}
}

func (e *engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// subscribe joins the engine's group on topic name and starts delivering its
// messages to process. It returns relay.ErrClosed after close.
func (e *engine) subscribe(name string, process wm.Process) (*subscription, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, relay.ErrClosed
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscription{
		e:       e,
		t:       e.hub.topic(name),
		process: process,
		pool:    delivery.NewPool(e.cfg.concurrency),
		ctx:     ctx,
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	s.t.mu.Lock()
	s.g = s.t.join(e.cfg.group)
	s.g.subs = append(s.g.subs, s)
	s.t.mu.Unlock()
	e.subs[s] = struct{}{}
	go s.dispatch()
	return s, nil
}

// join creates the engine's group on topic name, without subscribing.
func (e *engine) join(name string) {
	t := e.hub.topic(name)
	t.mu.Lock()
	t.join(e.cfg.group)
	t.mu.Unlock()
}

// close stops every subscription and waits for their handlers. Concurrent
// callers all return once it is done.
func (e *engine) close() {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		close(e.closing)
		subs := make([]*subscription, 0, len(e.subs))
		for s := range e.subs {
			subs = append(subs, s)
		}
		e.mu.Unlock()
		for _, s := range subs {
			s.cancel() // all stop at once, then we wait for each
		}
		for _, s := range subs {
			s.stop()
		}
	})
}

// subscription is one consumer of a group: a dispatcher goroutine that takes
// messages from the group while one of its pool's slots is free, and the
// pool's workers that process and settle them.
type subscription struct {
	e       *engine
	t       *topic
	g       *group // guarded by t.mu
	process wm.Process
	pool    *delivery.Pool
	ctx     context.Context // done when the subscription stops
	cancel  context.CancelFunc
	wake    chan struct{} // one pending wake-up for the dispatcher
	done    chan struct{} // closed when the dispatcher returns
	busy    int           // deliveries taken and not settled; guarded by t.mu

	stopOnce sync.Once
}

// signal wakes the dispatcher to look at the group again. It never blocks: a
// wake-up already pending covers this one, since the dispatcher rereads the
// whole state.
func (s *subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// stop stops dispatching, waits for the running deliveries to be settled and
// leaves the group. Deliveries it took and did not process are due again at
// once for the group's other subscriptions.
func (s *subscription) stop() {
	s.stopOnce.Do(func() {
		s.cancel()
		<-s.done
		s.pool.Wait()
		s.t.mu.Lock()
		s.g.remove(s)
		s.t.mu.Unlock()
		s.e.mu.Lock()
		delete(s.e.subs, s)
		s.e.mu.Unlock()
	})
}

func (s *subscription) dispatch() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		tk, wait, ok := s.take()
		if ok {
			if err := s.pool.Go(s.ctx, func() { s.run(tk) }); err != nil {
				s.giveBack(tk.seq)
				return
			}
			continue
		}
		var due <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			due = timer.C
		}
		select {
		case <-s.wake: // a message was published, a delivery settled or a redelivery scheduled
		case <-due: // a redelivery's backoff is over
		case <-s.ctx.Done(): // stop
			return
		}
		timer.Stop()
	}
}

// take takes the group's next message if a slot is free. When it takes none,
// wait is how long until a redelivery is due, or negative.
func (s *subscription) take() (tk taken, wait time.Duration, ok bool) {
	if s.ctx.Err() != nil {
		return taken{}, -1, false
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if s.busy >= s.e.cfg.concurrency {
		return taken{}, -1, false // a settling delivery wakes us
	}
	tk, wait, ok = s.g.next(time.Now())
	if ok {
		s.busy++
	}
	return tk, wait, ok
}

// giveBack returns a delivery that was taken and never processed.
func (s *subscription) giveBack(seq uint64) {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	s.g.release(seq, 0, time.Time{})
	s.busy--
}

func (s *subscription) run(tk taken) {
	err := s.process(s.ctx, tk.d)
	s.settle(tk, err)
	s.t.mu.Lock()
	s.busy--
	s.t.mu.Unlock()
	s.signal()
}

func (s *subscription) settle(tk taken, err error) {
	policy := s.e.cfg.policy
	if errors.Is(err, delivery.ErrStopped) {
		// Not processed: not an attempt. When the face stops ahead of the
		// engine, wait a backoff so that we do not hand it over and over to a
		// face that is going away.
		var delay time.Duration
		if s.ctx.Err() == nil {
			delay = policy.MinBackoff
		}
		s.t.mu.Lock()
		s.g.release(tk.seq, delay, time.Now())
		s.t.mu.Unlock()
		return
	}
	if err != nil {
		s.e.cfg.logger.Debug("memory: delivery failed", "topic", tk.d.Topic, "id", tk.d.ID,
			"attempt", tk.d.Attempt, "error", err)
	}
	if !s.e.cfg.native {
		// A plain queue: whoever wraps us (the retrier) counts attempts.
		s.t.mu.Lock()
		defer s.t.mu.Unlock()
		if err == nil {
			s.g.ack(tk.seq)
		} else {
			s.g.retry(tk.seq, policy.Backoff(tk.d.Attempt), time.Now())
		}
		return
	}
	if serr := policy.Settle(s.ctx, tk.d, err, settler{s: s, seq: tk.seq}); serr != nil {
		s.e.cfg.logger.Error("memory: settle delivery", "topic", tk.d.Topic, "id", tk.d.ID,
			"attempt", tk.d.Attempt, "error", serr)
	}
}

// settler settles one delivery on the hub.
type settler struct {
	s   *subscription
	seq uint64
}

func (st settler) Ack(context.Context) error {
	st.s.t.mu.Lock()
	defer st.s.t.mu.Unlock()
	st.s.g.ack(st.seq)
	return nil
}

func (st settler) Retry(_ context.Context, delay time.Duration) error {
	st.s.t.mu.Lock()
	defer st.s.t.mu.Unlock()
	st.s.g.retry(st.seq, delay, time.Now())
	return nil
}

// PublishDeadLetter stores msg on the hub. It waits while topic is full until
// ctx, the subscription's, is done: then the delivery stays pending.
func (st settler) PublishDeadLetter(ctx context.Context, topic string, msg delivery.Message) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return fmt.Errorf("memory: dead-letter topic: %w", err)
	}
	return st.s.e.hub.publish(ctx, nil, topic, msg)
}
