// The retry loop of a subscription: failed entries claimed back after
// their backoff and queued again.

package redisstreams

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/go-relay/relay/internal/delivery"
)

// retryEntry is a failed entry waiting for its backoff.
type retryEntry struct {
	id      string
	attempt int // deliveries made so far
	delay   time.Duration
	timer   *time.Timer
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
	ctx, cancel := context.WithTimeout(s.ctx, upkeepTimeout)
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
		s.e.failedOn(err)
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
	if len(msgs) > 0 {
		s.tel.Hold(int64(len(msgs)))
	}
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
