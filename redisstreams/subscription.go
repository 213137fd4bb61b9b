package redisstreams

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/lifecycle"
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
// what bounds the queue and the acker's backlog.
//
// The read, claim and retry loops and the workers stop when stopping begins;
// the refresh loop and the acker outlive the handlers still running, unless
// the stop gives up on them ([Broker.Shutdown]).
//
// With a *redis.Client, the blocking XREADGROUP runs on a client of its own,
// made from the client's options with a pool of one connection: it takes no
// connection from the caller's pool, and stop closes it, which ends a read
// in progress at once.
type subscription struct {
	e        *engine
	topic    string
	stream   string
	consumer string
	process  wm.Process
	log      *slog.Logger

	ctx         context.Context // fetching and handling; done once stopping begins
	cancel      context.CancelFunc
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

// retryEntry is a failed entry waiting for its backoff.
type retryEntry struct {
	id      string
	attempt int // deliveries made so far
	delay   time.Duration
	timer   *time.Timer
}

// entry is one delivery of a stream entry to this subscription. It settles
// itself: it is the [delivery.Settler] of its delivery.
type entry struct {
	s      *subscription
	values map[string]any // the entry's fields, decoded by the worker
	d      delivery.Delivery
}

// readMax is the largest COUNT of one XREADGROUP.
const readMax = 500

func newSubscription(e *engine, topic, consumer string, process wm.Process) *subscription {
	ctx, cancel := context.WithCancel(context.Background())
	size := e.cfg.concurrency + e.cfg.prefetch
	s := &subscription{
		e: e, topic: topic, stream: streamKey(topic), consumer: consumer, process: process,
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

// newReader returns a client for the blocking reads of one subscription:
// c's options (address, credentials, TLS, database, dialer, timeouts) with a
// pool of one connection and no client-side cache. c's hooks do not apply.
func newReader(c *redis.Client, hooks []redis.Hook) *redis.Client {
	o := *c.Options()
	// go-redis writes the client's maintenance-notification config while it
	// sets up its first connections, so reading it here races; a blocking
	// reader needs no such notifications anyway.
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	o.PoolSize, o.MinIdleConns, o.MaxIdleConns, o.MaxActiveConns = 1, 0, 1, 1
	o.MaxConcurrentDials = 1
	o.PipelinePoolSize = -1
	o.AutoPipelineOptions = nil
	o.ClientSideCacheConfig, o.ClientSideCache = nil, nil
	r := redis.NewClient(&o)
	for _, h := range hooks {
		r.AddHook(h)
	}
	return r
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
		if s.own != nil {
			// Ends a blocking read at once; later reads fail at once.
			if err := s.own.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
				s.log.Debug("redisstreams: close reader", "error", err)
			}
		}
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

// readLoop reads new entries until stopping, as many per read as the quota
// allows once a quarter of it is free (fewer, larger reads while the workers
// are the bottleneck). A failed read is retried after a growing pause; a
// group that vanished (a Redis restart without persistence) is created again,
// at "0" (see [engine.ensureGroup]).
func (s *subscription) readLoop() {
	least := max(1, (s.e.cfg.concurrency+s.e.cfg.prefetch)/4)
	failures := 0
	for {
		// The read does not take the quota while it blocks: a claim or a
		// retry that is due meanwhile must not wait for it.
		n := s.quota.await(s.ctx, least, readMax)
		if n == 0 {
			return
		}
		streams, err := s.reader.XReadGroup(s.ctx, &redis.XReadGroupArgs{
			Group:    s.e.cfg.group,
			Consumer: s.consumer,
			Streams:  []string{s.stream, ">"},
			Count:    int64(n),
			Block:    s.e.cfg.blockTimeout,
		}).Result()
		var msgs []redis.XMessage
		if err == nil && len(streams) > 0 {
			msgs = streams[0].Messages
		}
		s.quota.force(len(msgs))
		switch {
		case errors.Is(err, redis.Nil): // block timeout, nothing new
			failures = 0
			continue
		case err != nil:
			if s.ctx.Err() != nil {
				return
			}
			failures++
			s.readFailed(err, failures)
			continue
		}
		failures = 0
		s.hold(msgs)
		for _, m := range msgs {
			s.enqueue(m, 1)
		}
		// Let a woken worker run on this P now, rather than after the
		// next read is sent or once another P steals it: a few tens of µs
		// of publish → handler latency at low rates.
		runtime.Gosched()
	}
}

func (s *subscription) readFailed(err error, failures int) {
	delay := retryDelay(failures)
	s.log.Warn("redisstreams: read failed; retrying", "error", err, "failures", failures, "retry_in", delay)
	if !lifecycle.Sleep(s.ctx, delay) {
		return
	}
	if redis.HasErrorPrefix(err, "NOGROUP") {
		ctx, cancel := context.WithTimeout(s.ctx, setupTimeout)
		defer cancel()
		if err := s.e.ensureGroup(ctx, s.stream); err != nil {
			s.log.Warn("redisstreams: recreate group failed", "error", err)
		} else {
			s.log.Info("redisstreams: group recreated")
		}
	}
}

// hold marks entries as held, so that the idle refresh covers them and the
// claim loop leaves them alone.
func (s *subscription) hold(msgs []redis.XMessage) {
	s.mu.Lock()
	for _, m := range msgs {
		s.held[m.ID] = struct{}{}
	}
	s.mu.Unlock()
}

// enqueue queues held entry m, delivered for the attempt-th time, for the
// workers. The caller has taken its quota, so the queue has room.
func (s *subscription) enqueue(m redis.XMessage, attempt int) {
	if len(m.Values) == 0 {
		// Redis before 7 returns a pending entry that was trimmed from the
		// stream with no fields: nothing is left to deliver.
		s.log.Warn("redisstreams: pending entry was deleted from the stream; acking it", "id", m.ID)
		s.acks <- m.ID
		return
	}
	s.queue <- &entry{s: s, values: m.Values, d: delivery.Delivery{Topic: s.topic, ID: m.ID, Attempt: attempt}}
}

// deliverHeld takes quota for each of the held entries msgs, one at a time,
// and queues them. It returns false when stopping; the entries not queued
// then stay pending.
func (s *subscription) deliverHeld(msgs []redis.XMessage, attempt func(m redis.XMessage) int) bool {
	for i, m := range msgs {
		if s.quota.take(s.ctx, 1, 1) == 0 {
			s.mu.Lock()
			for _, m := range msgs[i:] {
				delete(s.held, m.ID)
			}
			s.mu.Unlock()
			return false
		}
		s.enqueue(m, attempt(m))
	}
	return true
}

// handle decodes the entry, runs the handler unless the policy skips the
// delivery (undecodable, or past max deliver), and settles it.
func (en *entry) handle() {
	s, d := en.s, &en.d
	d.Message, d.DecodeErr = decode(en.values)
	en.values = nil
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
	if err != nil && !errors.Is(err, delivery.ErrStopped) {
		delivery.LogHandlerFailed(s.log, pkg, d, err)
	}
	if serr := s.e.cfg.policy.Settle(context.Background(), d, err, en); serr != nil {
		delivery.LogSettleFailed(s.log, pkg, d, serr)
	}
}

// isLocal reports whether this subscription deals with id already.
func (s *subscription) isLocal(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, held := s.held[id]
	_, waiting := s.waiting[id]
	return held || waiting
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

// PublishDeadLetter implements delivery.Settler.
func (en *entry) PublishDeadLetter(ctx context.Context, topic string, msg delivery.Message) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	values, err := encode(msg)
	if err == nil {
		err = en.s.e.bounded(ctx).XAdd(ctx, &redis.XAddArgs{Stream: streamKey(topic), Values: values}).Err()
	}
	if err != nil {
		return err
	}
	delivery.LogDeadLettered(en.s.log, pkg, &en.d, msg.Metadata[relay.MetadataReason], topic)
	return nil
}

// ackLoop sends one XACK for every ack queued while the previous one was in
// flight: with many handlers finishing together, one round trip instead of
// one each. The ids of a failed XACK are kept (still held) and sent again,
// with the acks queued meanwhile, after a pause that grows from
// [readRetryMin] to [readRetryMax] while Redis does not answer. After the
// workers are done it acks what is left, once, and returns.
func (s *subscription) ackLoop() {
	var failed []string // still held; bounded by the quota
	var retry <-chan time.Time
	failures := 0
	for {
		var ids []string
		select {
		case id := <-s.acks:
			if len(failed) > 0 {
				failed = append(failed, id) // sent with the retry
				continue
			}
			ids = append(make([]string, 0, 16), id)
		case <-retry:
			ids, failed, retry = failed, nil, nil
		case <-s.tailStop:
			s.finalAcks(failed)
			return
		}
	drain:
		for len(ids) < ackBatchMax {
			select {
			case id := <-s.acks:
				ids = append(ids, id)
			default:
				break drain
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
		err := s.sendAcks(ctx, ids)
		cancel()
		if err != nil {
			failures++
			failed = ids
			delay := retryDelay(failures)
			s.log.Debug("redisstreams: ack failed; retrying", "entries", len(ids), "failures", failures,
				"retry_in", delay, "error", err)
			retry = time.After(delay)
			continue
		}
		failures = 0
	}
}

// finalAcks sends failed and the acks still queued at stop, in one try each
// within what is left of the stop's time ([stopTimeout]); what fails, or is
// not sent in time, stays pending.
func (s *subscription) finalAcks(failed []string) {
	ids := failed
	for {
		for len(ids) < ackBatchMax {
			select {
			case id := <-s.acks:
				ids = append(ids, id)
				continue
			default:
			}
			break
		}
		if len(ids) == 0 {
			return
		}
		err := s.stopCtx.Err()
		if err == nil {
			err = s.sendAcks(s.stopCtx, ids)
		}
		if err != nil {
			s.stopFailed = true
			s.log.Warn("redisstreams: ack failed at stop; the entries stay pending and will be delivered again",
				"entries", len(ids), "error", err)
			s.release(ids)
		}
		ids = nil
	}
}

// sendAcks acknowledges ids, within ctx's deadline, and releases them. On
// failure it returns the error and keeps them held.
func (s *subscription) sendAcks(ctx context.Context, ids []string) error {
	err := s.e.bounded(ctx).XAck(ctx, s.stream, s.e.cfg.group, ids...).Err()
	if err != nil {
		return err
	}
	s.release(ids)
	return nil
}

// release stops holding ids and gives back their quota.
func (s *subscription) release(ids []string) {
	s.mu.Lock()
	for _, id := range ids {
		delete(s.held, id)
	}
	s.mu.Unlock()
	s.quota.give(len(ids))
}

// retryDelay is the pause after the failures-th consecutive failure of a
// read or an ack, by the one backoff rule of relay (delivery.Policy.Backoff)
// from readRetryMin to readRetryMax.
func retryDelay(failures int) time.Duration {
	return delivery.Policy{MinBackoff: readRetryMin, MaxBackoff: readRetryMax}.Backoff(failures)
}

// scheduleRetry leaves d pending and delivers it again after delay, unless
// the subscription stops first (or delay is zero: the delivery was stopped),
// in which case it stays pending for whoever claims it next.
func (s *subscription) scheduleRetry(d *delivery.Delivery, delay time.Duration) {
	defer s.quota.give(1)
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.held, d.ID)
	if delay <= 0 || s.ctx.Err() != nil {
		return
	}
	r := &retryEntry{id: d.ID, attempt: d.Attempt, delay: delay}
	r.timer = time.AfterFunc(delay, func() {
		s.mu.Lock()
		if s.waiting[r.id] == r {
			s.dueList = append(s.dueList, r)
		}
		s.mu.Unlock()
		select {
		case s.due <- struct{}{}:
		default:
		}
	})
	s.waiting[d.ID] = r
}

// retryLoop redelivers the failed entries whose backoff is over.
func (s *subscription) retryLoop() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.due:
		}
		s.mu.Lock()
		batch := s.dueList
		s.dueList = nil
		s.mu.Unlock()
		if len(batch) > 0 && !s.redeliver(batch) {
			return
		}
	}
}

// redeliver claims the due entries back to this consumer in one pipeline and
// delivers them again. XCLAIM (without JUSTID) increments each entry's
// delivery counter, and the XPENDING after it reads the new value, which is
// the attempt number. MIN-IDLE of nearly the backoff makes the claim fail for
// an entry another consumer claimed meanwhile (its idle time restarted), so
// that it is not processed twice. It returns false when stopping.
func (s *subscription) redeliver(batch []*retryEntry) bool {
	ctx, cancel := context.WithTimeout(s.ctx, settleTimeout)
	defer cancel()
	claims := make([]*redis.XMessageSliceCmd, len(batch))
	pends := make([]*redis.XPendingExtCmd, len(batch))
	_, err := s.e.bounded(ctx).Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range batch {
			claims[i] = p.XClaim(ctx, &redis.XClaimArgs{Stream: s.stream, Group: s.e.cfg.group,
				Consumer: s.consumer, MinIdle: r.delay - r.delay/10, Messages: []string{r.id}})
			pends[i] = p.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: s.stream, Group: s.e.cfg.group,
				Start: r.id, End: r.id, Count: 1})
		}
		return nil
	})
	if err != nil && s.ctx.Err() == nil {
		// They stay pending on this consumer; the claim loop takes them
		// after the claim timeout.
		s.log.Warn("redisstreams: redelivery claim failed", "entries", len(batch), "error", err)
	}
	msgs := make([]redis.XMessage, 0, len(batch))
	attempts := make(map[string]int, len(batch))
	s.mu.Lock()
	for i, r := range batch {
		if s.waiting[r.id] == r {
			delete(s.waiting, r.id)
		}
		got, err := claims[i].Result()
		if err == nil && len(got) == 0 && s.gone(pends[i]) {
			s.log.Warn("redisstreams: entry waiting for redelivery is no longer pending (deleted from the stream, its consumer deleted, or acknowledged by another consumer); it is not delivered again",
				"id", r.id, "attempt", r.attempt)
		}
		if err != nil || len(got) == 0 {
			continue // failed, or claimed by another consumer, acked or removed
		}
		attempt := r.attempt + 1
		if p, err := pends[i].Result(); err == nil && len(p) == 1 && p[0].Consumer == s.consumer {
			attempt = int(p[0].RetryCount)
		}
		attempts[got[0].ID] = attempt
		msgs = append(msgs, got[0])
		s.held[got[0].ID] = struct{}{}
	}
	s.mu.Unlock()
	return s.deliverHeld(msgs, func(m redis.XMessage) int { return attempts[m.ID] })
}

// gone reports whether the XPENDING of one id that followed a claim that got
// nothing found it pending nowhere. Redis 7 drops an entry deleted from the
// stream (XDEL, XTRIM, MAXLEN) from the pending list when XCLAIM meets it,
// and XGROUP DELCONSUMER drops the consumer's; an entry another consumer
// claimed meanwhile is still pending, on that consumer. (Before Redis 7 the
// claim returns a deleted entry without fields, which [subscription.enqueue]
// logs.)
func (s *subscription) gone(p *redis.XPendingExtCmd) bool {
	pending, err := p.Result()
	return err == nil && len(pending) == 0
}

// claimLoop claims the entries of silent consumers every half claim timeout,
// and removes idle consumers without pending entries now and then.
func (s *subscription) claimLoop() {
	t := time.NewTicker(s.e.cfg.claimTimeout / 2)
	defer t.Stop()
	cleanEvery := s.e.idleConsumerTimeout() / 2
	lastClean := time.Time{} // first clean-up at the first tick
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if !s.claim(s.e.cfg.claimTimeout, "") {
			return
		}
		if time.Since(lastClean) >= cleanEvery {
			s.removeIdleConsumers()
			lastClean = time.Now()
		}
	}
}

// claim takes over the entries pending for at least minIdle (on owner, or on
// any consumer when owner is empty) that this subscription is not dealing
// with already, and delivers them. It returns false when stopping.
func (s *subscription) claim(minIdle time.Duration, owner string) bool {
	start := "-"
	for s.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(s.ctx, settleTimeout)
		pending, err := s.e.bounded(ctx).XPendingExt(ctx, &redis.XPendingExtArgs{Stream: s.stream,
			Group: s.e.cfg.group, Idle: minIdle, Start: start, End: "+", Count: claimPage, Consumer: owner}).Result()
		var msgs []redis.XMessage
		counts := make(map[string]int64, len(pending))
		if err == nil {
			ids := make([]string, 0, len(pending))
			for _, p := range pending {
				if p.Consumer == s.consumer && s.isLocal(p.ID) {
					continue
				}
				ids = append(ids, p.ID)
				counts[p.ID] = p.RetryCount
			}
			if len(ids) > 0 {
				msgs, err = s.e.bounded(ctx).XClaim(ctx, &redis.XClaimArgs{Stream: s.stream, Group: s.e.cfg.group,
					Consumer: s.consumer, MinIdle: minIdle, Messages: ids}).Result()
			}
		}
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("redisstreams: claim failed", "error", err)
			}
			return s.ctx.Err() == nil
		}
		if len(msgs) > 0 {
			s.log.Info("redisstreams: claimed pending entries", "entries", len(msgs), "min_idle", minIdle)
		}
		s.hold(msgs)
		// The claim incremented the counter read before it.
		if !s.deliverHeld(msgs, func(m redis.XMessage) int { return int(counts[m.ID]) + 1 }) {
			return false
		}
		if len(pending) < claimPage {
			return true
		}
		start = "(" + pending[len(pending)-1].ID
	}
	return false
}

// handBack returns the entries still queued at stop, which no handler saw,
// to the group: XCLAIM to itself with the delivery counter as it was before
// this subscription's read or claim, and an idle time of the claim timeout,
// so that the next consumer to look claims them at once and counts no
// delivery that did not happen.
func (s *subscription) handBack() {
	byCount := make(map[int][]string)
	n := 0
	for done := false; !done; {
		select {
		case en := <-s.queue:
			byCount[en.d.Attempt-1] = append(byCount[en.d.Attempt-1], en.d.ID)
			n++
		default:
			done = true
		}
	}
	if n == 0 {
		return
	}
	defer s.quota.give(n)
	// No idle refresh may undo the idle time set here.
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	s.mu.Lock()
	for _, ids := range byCount {
		for _, id := range ids {
			delete(s.held, id)
		}
	}
	s.mu.Unlock()
	ctx := s.stopCtx
	_, err := s.e.bounded(ctx).Pipelined(ctx, func(p redis.Pipeliner) error {
		for count, ids := range byCount {
			args := []any{"XCLAIM", s.stream, s.e.cfg.group, s.consumer, 0}
			for _, id := range ids {
				args = append(args, id)
			}
			args = append(args, "IDLE", s.e.cfg.claimTimeout.Milliseconds(), "RETRYCOUNT", count, "JUSTID")
			p.Do(ctx, args...)
		}
		return nil
	})
	if err != nil {
		s.log.Warn("redisstreams: hand back of unhandled entries failed; they stay pending until claimed",
			"entries", n, "error", err)
	}
}

// refreshLoop resets the idle time of the held entries every third of the
// claim timeout, until the handlers are done.
func (s *subscription) refreshLoop() {
	t := time.NewTicker(s.e.cfg.claimTimeout / 3)
	defer t.Stop()
	for {
		select {
		case <-s.tailStop:
			return
		case <-t.C:
		}
		s.refresh()
	}
}

func (s *subscription) refresh() {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	s.mu.Lock()
	ids := make([]string, 0, len(s.held))
	for id := range s.held {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), min(max(s.e.cfg.claimTimeout/3, 100*time.Millisecond), ackTimeout))
	defer cancel()
	for len(ids) > 0 {
		n := min(len(ids), refreshBatchMax)
		err := s.e.bounded(ctx).XClaimJustID(ctx, &redis.XClaimArgs{Stream: s.stream, Group: s.e.cfg.group,
			Consumer: s.consumer, MinIdle: 0, Messages: ids[:n]}).Err()
		if err != nil {
			s.log.Warn("redisstreams: idle refresh failed", "entries", len(ids), "error", err)
			return
		}
		ids = ids[n:]
	}
}

// deleteConsumerScript deletes consumer ARGV[2] of group ARGV[1] on stream
// KEYS[1] if it has no pending entry and has been idle for at least ARGV[3]
// milliseconds. Check and delete are one atomic step, so an entry the
// consumer reads in between cannot be dropped with it. It returns 1 when it
// deleted the consumer.
var deleteConsumerScript = redis.NewScript(`
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] == ARGV[2] then
    if f['pending'] == 0 and f['idle'] >= tonumber(ARGV[3]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
      return 1
    end
    return 0
  end
end
return 0
`)

// deleteConsumer removes consumer from the group, within ctx's deadline, if
// it has no pending entry and has been idle for at least idle.
func (s *subscription) deleteConsumer(ctx context.Context, consumer string, idle time.Duration) bool {
	n, err := deleteConsumerScript.Run(ctx, s.e.bounded(ctx), []string{s.stream},
		s.e.cfg.group, consumer, idle.Milliseconds()).Int()
	if err != nil {
		if !errors.Is(err, context.Canceled) { // stopping
			s.log.Warn("redisstreams: delete consumer failed", "deleted_consumer", consumer, "error", err)
		}
		return false
	}
	return n == 1
}

// removeIdleConsumers removes the group's consumers that have no pending
// entry and have been idle for the idle-consumer timeout (consumers of
// processes that stopped without cleaning up).
func (s *subscription) removeIdleConsumers() {
	timeout := s.e.idleConsumerTimeout()
	ctx, cancel := context.WithTimeout(s.ctx, settleTimeout)
	defer cancel()
	infos, err := s.e.bounded(ctx).XInfoConsumers(ctx, s.stream, s.e.cfg.group).Result()
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("redisstreams: list consumers failed", "error", err)
		}
		return
	}
	for _, c := range infos {
		if c.Name == s.consumer || c.Pending > 0 || c.Idle < timeout {
			continue
		}
		if s.deleteConsumer(ctx, c.Name, timeout) {
			s.log.Info("redisstreams: removed idle consumer", "removed_consumer", c.Name, "idle", c.Idle)
		}
	}
}

// quota counts the entries a subscription may still take on. Takers wait for
// room; give wakes them all.
type quota struct {
	mu   sync.Mutex
	free int
	wake chan struct{} // closed by give; made by a taker that waits
}

// take waits until at least least entries are free, then takes up to most
// of them. It returns 0 when ctx is done first.
func (q *quota) take(ctx context.Context, least, most int) int {
	return q.wait(ctx, least, most, true)
}

// await is take without taking: it returns how many could be taken now. The
// caller takes what it got with force.
func (q *quota) await(ctx context.Context, least, most int) int {
	return q.wait(ctx, least, most, false)
}

// force takes n entries, even past the limit.
func (q *quota) force(n int) {
	q.mu.Lock()
	q.free -= n
	q.mu.Unlock()
}

func (q *quota) wait(ctx context.Context, least, most int, take bool) int {
	for {
		q.mu.Lock()
		if q.free >= least {
			n := min(q.free, most)
			if take {
				q.free -= n
			}
			q.mu.Unlock()
			return n
		}
		if q.wake == nil {
			q.wake = make(chan struct{})
		}
		wake := q.wake
		q.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0
		}
	}
}

// give returns n entries.
func (q *quota) give(n int) {
	q.mu.Lock()
	q.free += n
	wake := q.wake
	q.wake = nil
	q.mu.Unlock()
	if wake != nil {
		close(wake)
	}
}
