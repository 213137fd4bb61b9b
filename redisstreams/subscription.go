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
	"github.com/go-relay/relay/internal/wm"
)

// subscription is one consumer of the group on one stream. Its goroutines:
//
//   - the read loop: XREADGROUP ">" for new entries (attempt 1, no extra round
//     trip), handed to the worker pool;
//   - the claim loop: every half claim timeout, XPENDING IDLE + XCLAIM of
//     entries whose consumer went silent, and now and then the removal of
//     idle consumers without pending entries;
//   - the retry loop: re-claims to itself, after their backoff, the entries
//     whose handler failed, which bumps their delivery counter, and delivers
//     them again;
//   - the refresh loop: every third of the claim timeout, XCLAIM JUSTID to
//     itself of the entries it holds, which resets their idle time without
//     touching the counter, so that no one claims a slow handler's entry;
//   - the acker: one XACK for all the acks that queued up meanwhile.
//
// The first three stop when stopping begins; the last two outlive the
// handlers still running.
type subscription struct {
	e        *engine
	topic    string
	stream   string
	consumer string
	process  wm.Process
	log      *slog.Logger

	ctx      context.Context // fetching; done once stopping begins
	cancel   context.CancelFunc
	pool     *delivery.Pool
	loops    sync.WaitGroup // read, claim and retry loops
	tail     sync.WaitGroup // refresh loop and acker
	tailStop chan struct{}
	acks     chan ackRequest
	due      chan struct{} // a retry timer fired
	stopOnce sync.Once

	// refreshMu orders an idle refresh in flight before a failed entry's
	// backoff starts, so that the retry's XCLAIM MIN-IDLE sees the whole
	// backoff as idle time.
	refreshMu sync.Mutex

	mu      sync.Mutex
	held    map[string]struct{}    // in a handler, or about to be: refreshed
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

type ackRequest struct {
	id   string
	done chan error
}

func newSubscription(e *engine, topic, consumer string, process wm.Process) *subscription {
	ctx, cancel := context.WithCancel(context.Background())
	return &subscription{
		e: e, topic: topic, stream: streamKey(topic), consumer: consumer, process: process,
		log:    e.cfg.logger.With("pkg", pkg, "topic", topic, "group", e.cfg.group, "consumer", consumer),
		ctx:    ctx,
		cancel: cancel,
		pool:   delivery.NewPool(e.cfg.concurrency),
		acks:   make(chan ackRequest, e.cfg.concurrency),
		due:    make(chan struct{}, 1),

		tailStop: make(chan struct{}),
		held:     make(map[string]struct{}),
		waiting:  make(map[string]*retryEntry),
	}
}

func (s *subscription) start() {
	s.tail.Add(2)
	go func() { defer s.tail.Done(); s.refreshLoop() }()
	go func() { defer s.tail.Done(); s.ackLoop() }()
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

// stop stops fetching, waits for the handlers running, leaves what did not
// finish pending, and deletes the consumer when nothing is pending on it.
func (s *subscription) stop() {
	s.stopOnce.Do(func() {
		s.cancel()
		s.loops.Wait()
		s.pool.Wait()
		s.mu.Lock()
		for _, r := range s.waiting {
			r.timer.Stop() // still pending: the next owner redelivers it
		}
		s.waiting, s.dueList = nil, nil
		s.mu.Unlock()
		close(s.tailStop)
		s.tail.Wait()
		s.deleteConsumer(s.consumer, 0)
		s.e.remove(s)
	})
}

// readLoop reads new entries until stopping. A failed read is retried after a
// growing pause; a group that vanished (a Redis restart without persistence)
// is created again.
func (s *subscription) readLoop() {
	failures := 0
	for s.ctx.Err() == nil {
		streams, err := s.e.client.XReadGroup(s.ctx, &redis.XReadGroupArgs{
			Group:    s.e.cfg.group,
			Consumer: s.consumer,
			Streams:  []string{s.stream, ">"},
			Count:    int64(max(s.pool.Free(), 1)),
			Block:    s.e.cfg.blockTimeout,
		}).Result()
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
		for _, st := range streams {
			for _, m := range st.Messages {
				if !s.deliver(m, 1) {
					return
				}
			}
		}
	}
}

func (s *subscription) readFailed(err error, failures int) {
	delay := readRetryMin
	for i := 1; i < failures && delay < readRetryMax; i++ {
		delay *= 2
	}
	delay = jitter(min(delay, readRetryMax))
	s.log.Warn("redisstreams: read failed; retrying", "err", err, "failures", failures, "retry_in", delay)
	if !sleep(s.ctx, delay) {
		return
	}
	if redis.HasErrorPrefix(err, "NOGROUP") {
		ctx, cancel := context.WithTimeout(s.ctx, setupTimeout)
		defer cancel()
		if err := s.e.ensureGroup(ctx, s.stream); err != nil {
			s.log.Warn("redisstreams: recreate group failed", "err", err)
		} else {
			s.log.Info("redisstreams: group recreated")
		}
	}
}

// deliver hands entry m, delivered for the attempt-th time, to the pool. It
// returns false when the subscription is stopping; m then stays pending.
func (s *subscription) deliver(m redis.XMessage, attempt int) bool {
	if len(m.Values) == 0 {
		// Redis before 7 returns a pending entry that was trimmed from the
		// stream with no fields: nothing is left to deliver.
		s.log.Warn("redisstreams: pending entry was deleted from the stream; acking it", "id", m.ID)
		ctx, cancel := context.WithTimeout(s.ctx, settleTimeout)
		defer cancel()
		if err := s.e.client.XAck(ctx, s.stream, s.e.cfg.group, m.ID).Err(); err != nil {
			s.log.Warn("redisstreams: ack failed", "id", m.ID, "err", err)
		}
		return s.ctx.Err() == nil
	}
	s.mu.Lock()
	s.held[m.ID] = struct{}{}
	s.mu.Unlock()
	msg, err := decode(m.Values)
	d := &delivery.Delivery{Topic: s.topic, ID: m.ID, Attempt: attempt, Message: msg, DecodeErr: err}
	if err := s.pool.Go(s.ctx, func() { s.handle(d) }); err != nil {
		s.release(m.ID)
		return false
	}
	return true
}

// handle runs one delivery and settles it by the policy.
func (s *subscription) handle(d *delivery.Delivery) {
	var err error
	if d.DecodeErr == nil {
		err = s.process(s.ctx, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	if serr := s.e.cfg.policy.Settle(ctx, d, err, settler{s, d}); serr != nil {
		s.log.Error("redisstreams: settle failed; the entry stays pending", "id", d.ID, "attempt", d.Attempt, "err", serr)
	}
}

func (s *subscription) release(id string) {
	s.mu.Lock()
	delete(s.held, id)
	s.mu.Unlock()
}

// isLocal reports whether this subscription deals with id already.
func (s *subscription) isLocal(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, held := s.held[id]
	_, waiting := s.waiting[id]
	return held || waiting
}

// settler implements delivery.Settler for one delivery.
type settler struct {
	s *subscription
	d *delivery.Delivery
}

func (t settler) Ack(ctx context.Context) error {
	defer t.s.release(t.d.ID)
	return t.s.ack(ctx, t.d.ID)
}

func (t settler) Retry(_ context.Context, delay time.Duration) error {
	t.s.scheduleRetry(t.d, delay)
	return nil
}

func (t settler) PublishDeadLetter(ctx context.Context, topic string, msg delivery.Message) error {
	values, err := encode(msg)
	if err == nil {
		err = t.s.e.client.XAdd(ctx, &redis.XAddArgs{Stream: streamKey(topic), Values: values}).Err()
	}
	if err != nil {
		return err
	}
	t.s.log.Warn("redisstreams: entry dead-lettered", "id", t.d.ID, "attempt", t.d.Attempt,
		"dead_letter_topic", topic, "reason", msg.Metadata[relay.MetadataReason])
	return nil
}

// ack queues id for the acker and waits for the XACK that carries it.
func (s *subscription) ack(ctx context.Context, id string) error {
	done := make(chan error, 1)
	select {
	case s.acks <- ackRequest{id: id, done: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ackLoop sends one XACK for every ack queued while the previous one was in
// flight: with N handlers finishing together, one round trip instead of N.
func (s *subscription) ackLoop() {
	batch := make([]ackRequest, 0, ackBatchMax)
	ids := make([]string, 0, ackBatchMax)
	for {
		batch, ids = batch[:0], ids[:0]
		select {
		case r := <-s.acks:
			batch = append(batch, r)
		case <-s.tailStop:
			return
		}
	drain:
		for len(batch) < ackBatchMax {
			select {
			case r := <-s.acks:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		for _, r := range batch {
			ids = append(ids, r.id)
		}
		ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
		err := s.e.client.XAck(ctx, s.stream, s.e.cfg.group, ids...).Err()
		cancel()
		for _, r := range batch {
			r.done <- err
		}
	}
}

// scheduleRetry leaves d pending and delivers it again after delay, unless
// the subscription stops first (or delay is zero: the delivery was stopped),
// in which case it stays pending for whoever claims it next.
func (s *subscription) scheduleRetry(d *delivery.Delivery, delay time.Duration) {
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
	_, err := s.e.client.Pipelined(ctx, func(p redis.Pipeliner) error {
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
		s.log.Warn("redisstreams: redelivery claim failed", "entries", len(batch), "err", err)
	}
	for i, r := range batch {
		msgs, err := claims[i].Result()
		if err != nil || len(msgs) == 0 {
			// Failed, or claimed by another consumer, acked or trimmed.
			s.forget(r)
			continue
		}
		attempt := r.attempt + 1
		if p, err := pends[i].Result(); err == nil && len(p) == 1 && p[0].Consumer == s.consumer {
			attempt = int(p[0].RetryCount)
		}
		ok := s.deliver(msgs[0], attempt)
		s.forget(r)
		if !ok {
			return false
		}
	}
	return true
}

func (s *subscription) forget(r *retryEntry) {
	s.mu.Lock()
	if s.waiting[r.id] == r {
		delete(s.waiting, r.id)
	}
	s.mu.Unlock()
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
		pending, err := s.e.client.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: s.stream,
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
				msgs, err = s.e.client.XClaim(ctx, &redis.XClaimArgs{Stream: s.stream, Group: s.e.cfg.group,
					Consumer: s.consumer, MinIdle: minIdle, Messages: ids}).Result()
			}
		}
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("redisstreams: claim failed", "err", err)
			}
			return s.ctx.Err() == nil
		}
		if len(msgs) > 0 {
			s.log.Info("redisstreams: claimed pending entries", "entries", len(msgs), "min_idle", minIdle)
		}
		for _, m := range msgs {
			// The claim incremented the counter read before it.
			if !s.deliver(m, int(counts[m.ID])+1) {
				return false
			}
		}
		if len(pending) < claimPage {
			return true
		}
		start = "(" + pending[len(pending)-1].ID
	}
	return false
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
	ctx, cancel := context.WithTimeout(context.Background(), max(s.e.cfg.claimTimeout/3, 100*time.Millisecond))
	defer cancel()
	for len(ids) > 0 {
		n := min(len(ids), refreshBatchMax)
		err := s.e.client.XClaimJustID(ctx, &redis.XClaimArgs{Stream: s.stream, Group: s.e.cfg.group,
			Consumer: s.consumer, MinIdle: 0, Messages: ids[:n]}).Err()
		if err != nil {
			s.log.Warn("redisstreams: idle refresh failed", "entries", len(ids), "err", err)
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

// deleteConsumer removes consumer from the group if it has no pending entry
// and has been idle for at least idle.
func (s *subscription) deleteConsumer(consumer string, idle time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	n, err := deleteConsumerScript.Run(ctx, s.e.client, []string{s.stream},
		s.e.cfg.group, consumer, idle.Milliseconds()).Int()
	if err != nil {
		s.log.Warn("redisstreams: delete consumer failed", "deleted_consumer", consumer, "err", err)
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
	infos, err := s.e.client.XInfoConsumers(ctx, s.stream, s.e.cfg.group).Result()
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("redisstreams: list consumers failed", "err", err)
		}
		return
	}
	for _, c := range infos {
		if c.Name == s.consumer || c.Pending > 0 || c.Idle < timeout {
			continue
		}
		if s.deleteConsumer(c.Name, timeout) {
			s.log.Info("redisstreams: removed idle consumer", "removed_consumer", c.Name, "idle", c.Idle)
		}
	}
}
