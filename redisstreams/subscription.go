package redisstreams

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/lifecycle"
	"github.com/go-relay/relay/internal/telemetry"
	"github.com/go-relay/relay/internal/wm"
)

// subscription is one consumer of the group on one stream. Its goroutines:
//
//   - the read loop: XREADGROUP ">" for new entries (attempt 1, no extra round
//     trip), as many as the quota of held entries allows, queued for the
//     workers;
//   - the workers, [WithConcurrency] of them: each takes the next queued
//     entry, runs the handler and settles the delivery by the policy;
//   - the claim loop: every half claim timeout, XPENDING IDLE + XCLAIM of
//     entries whose consumer went silent, and now and then the removal of
//     idle consumers without pending entries;
//   - the retry loop: re-claims to itself, after their backoff, the entries
//     whose handler failed, which bumps their delivery counter, and queues
//     them again;
//   - the refresh loop: every third of the claim timeout, XCLAIM JUSTID to
//     itself of the entries it holds, which resets their idle time without
//     touching the counter, so that no one claims a queued entry or a slow
//     handler's;
//   - the acker: one XACK for all the acks that queued up meanwhile. Workers
//     hand it their acks and move on. The ids of a failed XACK (Redis down or
//     restarting) stay held, refreshed and counted in the quota, and are sent
//     again after a growing pause until Redis answers, so that a restart does
//     not make them delivered again; at stop they get one more short try,
//     then stay pending (at least once).
//
// An entry is held from the read or claim that brings it until its XACK is
// answered, its retry is scheduled, or it is handed back at stop. The quota
// bounds the held entries to concurrency + prefetch (twice that for a moment
// when a read and a claim coincide): that is the back-pressure on reads, and
// what bounds the queue and the acker's backlog. The relay.messages.held
// gauge counts an entry from the same read or claim until its delivery is
// settled (the handler's outcome decided, before its XACK) or it is handed
// back, so that entries read ahead and queued for a worker are counted as
// well as those in a handler, and it reads 0 when the subscription is idle.
//
// The read, claim and retry loops and the workers stop when stopping begins;
// the refresh loop and the acker outlive the handlers still running, unless
// the stop gives up on them ([Broker.Shutdown]).
//
// With a *redis.Client, the blocking XREADGROUP runs on a client of its own,
// made from the client's options with a pool of one connection: it takes no
// connection from the caller's pool, and stop closes it, which ends a read
// in progress at once. With a *redis.ClusterClient the same is made from the
// client of the master of the stream's slot, and made again from the master
// of the moment after a read failed (failover, resharding).
type subscription struct {
	e        *engine
	topic    string
	stream   string
	consumer string
	process  wm.Process
	tel      *telemetry.Topic
	log      *slog.Logger

	ctx         context.Context // fetching and handling; done once stopping begins
	cancel      context.CancelFunc
	readerMu    sync.Mutex            // guards reader and own, swapped on a cluster
	reader      redis.UniversalClient // the XREADGROUP client: own or e.client
	own         *redis.Client         // reader, when it is the subscription's own
	giveUp      chan struct{}         // closed by abandon: stop no longer waits for handlers
	abandonOnce sync.Once
	quota       *quota
	queue       chan *entry    // read or claimed, waiting for a worker; never full
	acks        chan string    // ids for the acker; never full
	loops       sync.WaitGroup // read, claim and retry loops
	workers     sync.WaitGroup
	tail        sync.WaitGroup // refresh loop and acker
	tailStop    chan struct{}
	due         chan struct{} // a retry timer fired
	stopOnce    sync.Once
	stopCtx     context.Context // bounds what stop sends (see [engine.bounded]); set before tailStop is closed
	stopFailed  bool            // a final ack failed; written by the acker before it returns

	// refreshMu orders an idle refresh in flight before a failed entry's
	// backoff starts, so that the retry's XCLAIM MIN-IDLE sees the whole
	// backoff as idle time.
	refreshMu sync.Mutex

	mu      sync.Mutex
	held    map[string]struct{}    // queued, in a handler or being acked: refreshed
	waiting map[string]*retryEntry // failed, waiting for their backoff
	dueList []*retryEntry
}

// entry is one delivery of a stream entry to this subscription. It settles
// itself: it is the [delivery.Settler] of its delivery.
type entry struct {
	s      *subscription
	values map[string]any // the entry's fields, decoded by the worker
	d      delivery.Delivery
}

func newSubscription(e *engine, topic, consumer string, process wm.Process) *subscription {
	ctx, cancel := context.WithCancel(context.Background())
	size := e.cfg.concurrency + e.cfg.prefetch
	s := &subscription{
		e: e, topic: topic, stream: streamKey(topic), consumer: consumer, process: process,
		tel:    e.tel.Subscription(topic, e.cfg.group),
		log:    delivery.Logger(e.cfg.logger, pkg, e.cfg.group).With(delivery.LogTopic, topic, "consumer", consumer),
		ctx:    ctx,
		cancel: cancel,
		quota:  &quota{free: size},
		// A read takes what it got after it, while a claim or retry may have
		// taken the rest of the quota meanwhile: at most twice the quota
		// is held.
		queue: make(chan *entry, 2*size),
		acks:  make(chan string, 2*size),
		due:   make(chan struct{}, 1),

		tailStop: make(chan struct{}),
		giveUp:   make(chan struct{}),
		held:     make(map[string]struct{}),
		waiting:  make(map[string]*retryEntry),
	}
	s.reader = e.client
	if c, ok := e.client.(*redis.Client); ok {
		s.own = newReader(c, e.cfg.readerHooks)
		s.reader = s.own
	}
	return s
}

// Abandon makes Stop stop waiting for the running handlers
// (lifecycle.Subscription).
func (s *subscription) Abandon() { s.abandonOnce.Do(func() { close(s.giveUp) }) }

func (s *subscription) start() {
	s.tail.Add(2)
	go func() { defer s.tail.Done(); s.refreshLoop() }()
	go func() { defer s.tail.Done(); s.ackLoop() }()
	for range s.e.cfg.concurrency {
		lifecycle.Go(&s.workers, s.work)
	}
	s.loops.Add(1)
	go func() {
		defer s.loops.Done()
		// Entries a previous process with the same consumer name left
		// pending come first, before any new entry is held.
		s.claim(0, s.consumer)
		s.loops.Add(2)
		go func() { defer s.loops.Done(); s.claimLoop() }()
		go func() { defer s.loops.Done(); s.retryLoop() }()
		s.readLoop()
	}()
}

// Stop stops fetching, waits for the handlers running, hands back the
// entries still queued, leaves what did not finish pending, and deletes the
// consumer when nothing is pending on it (lifecycle.Subscription).
func (s *subscription) Stop() {
	s.stopOnce.Do(func() {
		s.cancel()
		// Ends a blocking read at once; later reads fail at once.
		s.readerMu.Lock()
		s.closeReaderLocked()
		s.readerMu.Unlock()
		s.loops.Wait()
		workersDone := make(chan struct{})
		go func() { s.workers.Wait(); close(workersDone) }()
		abandoned := false
		select {
		case <-workersDone:
		case <-s.giveUp:
			// Handlers still run: their entries stay pending, no longer
			// refreshed, for another consumer to claim after the claim
			// timeout. What they settle later is left pending too.
			abandoned = true
			s.log.Warn("redisstreams: stopped without waiting for the running handlers; their entries stay pending")
		}
		// From here on, what is sent shares one bound, however long the
		// client's own timeouts are.
		var cancel context.CancelFunc
		s.stopCtx, cancel = context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		s.handBack()
		s.mu.Lock()
		for _, r := range s.waiting {
			r.timer.Stop() // still pending: the next owner redelivers it
		}
		s.waiting, s.dueList = nil, nil
		s.mu.Unlock()
		close(s.tailStop)
		s.tail.Wait()
		if !abandoned && !s.stopFailed && s.stopCtx.Err() == nil {
			// With acks that failed it has pending entries: nothing to do.
			s.deleteConsumer(s.stopCtx, s.consumer, 0)
		}
		s.e.subs.Remove(s)
	})
}

// work runs queued entries, one at a time, until stopping. A handler that
// calls runtime.Goexit ends the worker (its delivery settled): lifecycle.Go
// starts a new one in its place.
func (s *subscription) work() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case en := <-s.queue:
			if s.ctx.Err() != nil {
				s.queue <- en // never full; handed back by stop
				return
			}
			en.handle()
		}
	}
}

// handle decodes the entry, runs the handler unless the policy skips the
// delivery (undecodable, or past max deliver), and settles it.
func (en *entry) handle() {
	s, d := en.s, &en.d
	d.Message, d.DecodeErr = decode(en.values)
	en.values = nil
	d.Telemetry = s.tel.Start(context.Background(), d.Message.UUID, d.Attempt, d.Message.Metadata)
	err := s.e.cfg.policy.Skip(d)
	if err == nil {
		returned := false
		defer func() {
			if !returned { // the handler called runtime.Goexit
				en.settle(delivery.ErrGoexit)
			}
		}()
		err = s.process(s.ctx, d)
		returned = true
	}
	en.settle(err)
}

func (en *entry) settle(err error) {
	s, d := en.s, &en.d
	s.tel.Hold(-1) // counted since its read or claim
	if err != nil && !errors.Is(err, delivery.ErrStopped) {
		delivery.LogHandlerFailed(s.log, pkg, d, err)
	}
	if serr := s.e.cfg.policy.Settle(context.Background(), d, err, en); serr != nil {
		delivery.LogSettleFailed(s.log, pkg, d, serr)
	}
}

// Ack hands the entry to the acker, without waiting for the XACK: the
// acker logs a failure, and the entry, still pending, is delivered again.
func (en *entry) Ack(context.Context) error {
	en.s.acks <- en.d.ID
	return nil
}

// Retry implements delivery.Settler.
func (en *entry) Retry(_ context.Context, delay time.Duration) error {
	en.s.scheduleRetry(&en.d, delay)
	return nil
}

// PublishDeadLetter implements delivery.Settler. An invalid topic is
// refused, as the other backends refuse it, rather than written to a key no
// Subscribe can read: WithDeadLetterTopic's function, checked at
// Subscribe, may name another topic later. The entry then stays pending.
func (en *entry) PublishDeadLetter(ctx context.Context, topic string, msg delivery.Message) error {
	if err := relay.ValidateTopic(topic); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	values, err := encode(msg)
	switch {
	case err != nil:
	case en.s.e.cfg.replicaAcks > 0:
		err = en.s.e.send(ctx, []redis.XAddArgs{{Stream: streamKey(topic), Values: values}})
	default:
		err = en.s.e.bounded(ctx).XAdd(ctx, &redis.XAddArgs{Stream: streamKey(topic), Values: values}).Err()
	}
	if err != nil {
		return err
	}
	delivery.LogDeadLettered(en.s.log, pkg, &en.d, msg.Metadata[relay.MetadataReason], topic)
	return nil
}
